// Which C library an image's programs use, read from its layers before
// anything runs: the IDE tools (Node's official binary and code-server's
// native modules, built on the host) need glibc's dynamic loader in the
// workspace. musl (Alpine) and images with no dynamic loader at all
// (static busybox, distroless/static, scratch) cannot run them.
//
// The layers are read as the overlay would merge them (top first), with
// symlinks resolved inside the image, never on the host: Debian's /lib64
// is a link to usr/lib64.
import { lstatSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { LxrError } from '../../proto/shared/errors.js';

export type Libc = 'glibc' | 'musl' | 'none';

const GLIBC_LOADER: Record<string, string> = { x64: 'lib64/ld-linux-x86-64.so.2', arm64: 'lib/ld-linux-aarch64.so.1' };
const MUSL_LOADER: Record<string, string> = { x64: 'lib/ld-musl-x86_64.so.1', arm64: 'lib/ld-musl-aarch64.so.1' };
const MAX_LINKS = 40;

/** The host path of `rel` in the merged layers (top first), symlinks resolved inside them; null if absent. */
export function resolveInLayers(layers: readonly string[], rel: string): string | null {
  let todo = rel.split('/').filter((c) => c !== '' && c !== '.');
  let done: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const c = todo.shift()!;
    if (c === '..') {
      done.pop();
      continue;
    }
    const candidate = [...done, c];
    let found: { layer: string; link: string | null } | null = null;
    for (const layer of layers) {
      try {
        const st = lstatSync(path.join(layer, ...candidate));
        // An overlay whiteout (char device 0/0) hides what lower layers have.
        if (st.isCharacterDevice() && st.rdev === 0) break;
        found = { layer, link: st.isSymbolicLink() ? readlinkSync(path.join(layer, ...candidate)) : null };
        break;
      } catch {
        // not in this layer
      }
    }
    if (!found) return null;
    if (found.link === null) {
      done = candidate;
      continue;
    }
    if (++links > MAX_LINKS) return null;
    const target = found.link.split('/').filter((x) => x !== '' && x !== '.');
    if (found.link.startsWith('/')) done = [];
    todo = [...target, ...todo];
  }
  for (const layer of layers) {
    try {
      lstatSync(path.join(layer, ...done));
      return path.join(layer, ...done);
    } catch {
      // not in this layer
    }
  }
  return null;
}

export function detectLibc(layers: readonly string[], arch = process.arch): Libc {
  if (MUSL_LOADER[arch] && resolveInLayers(layers, MUSL_LOADER[arch]!)) return 'musl';
  if (GLIBC_LOADER[arch] && resolveInLayers(layers, GLIBC_LOADER[arch]!)) return 'glibc';
  return 'none';
}

/** Throws, naming the image and what it has, unless its programs use glibc. */
export function requireGlibc(layers: readonly string[], image: string, ide: string, arch = process.arch): void {
  const libc = detectLibc(layers, arch);
  if (libc === 'glibc') return;
  const has = libc === 'musl' ? `uses musl libc (${MUSL_LOADER[arch]})` : `has no glibc dynamic loader (${GLIBC_LOADER[arch] ?? 'none known for ' + arch})`;
  throw new LxrError('LXR_UNSUPPORTED', `image ${image} ${has}; ${ide} needs glibc: use a glibc-based image (Debian, Ubuntu, Fedora, ...)`, { field: 'ide' });
}
