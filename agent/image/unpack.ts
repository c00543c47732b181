// Image layer unpacking: one layer blob (tar, gzip or zstd) becomes one
// directory usable as an overlayfs lower dir. The tar streams through the
// decompressor, a meter (sha256 for the diffID, the byte limit) and node-tar,
// while LayerPlanner (whiteout.ts) judges every entry before it is written.
// Everything lands in a temporary sibling that is renamed into place only
// when the whole layer succeeded; on any failure it is removed.
//
// How node-tar (v7) is used: it writes regular files, hardlinks and
// directories, with strict: true (any warning fails) and its own path checks
// left on as a second line of defence. It never sees symlinks or whiteouts:
// with preservePaths: false it would rewrite absolute symlink targets
// (/usr/bin/x -> usr/bin/x) and refuse ones that climb above the root,
// both normal in a rootfs; with preservePaths: true it would drop its checks.
// So symlinks, whiteouts, opaque dirs and the final modes/owners/mtimes
// (node-tar applies the umask, forces u+rwx on directories, loses set-id bits
// to chown, and does not own symlinks) are done afterwards, in one run of
// native/fsops (lxr-fsops), which resolves every path with openat2 beneath
// the layer dir and follows no symlink.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { lstat, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Unpack, type ReadEntry } from 'tar';
import { LxrError, alreadyExists, failAfterCleanup, invalidArgument } from '../../proto/shared/errors.js';
import { compressionForMediaType, decompressError, decompressStages, sniffCompression } from './decompress.js';
import { LayerPlanner, entryError, type FsPlan, type LayerEntryType } from './whiteout.js';

export interface UnpackLimits {
  /** Uncompressed tar bytes (headers included); the decompression-bomb stop. */
  maxBytes: number;
  /** Tar entries (whiteouts included, pax/longname records not). */
  maxEntries: number;
}

export interface UnpackInput {
  /** The layer blob as stored (compressed or not). */
  source: Readable;
  /** The layer's media type (OCI or Docker); decides the decompressor. */
  mediaType: string;
  /** The final layer directory; must not exist. Its parent is created if missing. */
  dest: string;
  /** The config's rootfs.diff_ids entry: sha256 of the uncompressed tar. */
  expectedDiffId?: string;
  limits: UnpackLimits;
}

export interface UnpackResult {
  /** sha256:HEX of the uncompressed tar. */
  diffId: string;
  /** Uncompressed tar bytes. */
  size: number;
  entries: number;
}

/** Carries out an FsPlan beneath a layer directory. */
export interface FsOps {
  apply(dir: string, plan: FsPlan): Promise<void>;
}

export function defaultFsopsPath(): string {
  if (process.env.LXR_FSOPS) return process.env.LXR_FSOPS;
  // dist/agent/image/unpack.js or agent/image/unpack.ts -> <repo>/native/build/lxr-fsops
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'native', 'build', 'lxr-fsops');
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  return 'lxr-fsops';
}

/** The helper's NUL-separated records (see native/fsops/main.c), in order. */
export function encodeFsPlan(plan: FsPlan): Buffer {
  const f: string[] = [];
  const num = (n: number | undefined): string => (n === undefined ? '' : String(Math.trunc(n)));
  for (const s of plan.symlinks) f.push('symlink', s.path, s.target);
  for (const w of plan.whiteouts) f.push('whiteout', w);
  for (const o of plan.opaque) f.push('opaque', o);
  for (const a of plan.attrs) f.push('attr', a.path, num(a.mode), num(a.uid), num(a.gid), num(a.mtimeMs !== undefined && a.mtimeMs >= 0 ? a.mtimeMs : undefined));
  return Buffer.from(f.length === 0 ? '' : f.join('\0') + '\0');
}

const isEmptyPlan = (p: FsPlan): boolean =>
  p.symlinks.length + p.whiteouts.length + p.opaque.length + p.attrs.length === 0;

/** Runs native/build/lxr-fsops once per layer. */
export class LinuxFsOps implements FsOps {
  constructor(private readonly bin: string = defaultFsopsPath()) {}

  apply(dir: string, plan: FsPlan): Promise<void> {
    if (isEmptyPlan(plan)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const child = spawn(this.bin, [dir], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d: string) => {
        if (stderr.length < 64 * 1024) stderr += d;
      });
      child.stdin.on('error', () => {
        // EPIPE when the helper fails early; its exit status tells the story.
      });
      child.on('error', (e) => reject(new LxrError('LXR_INTERNAL', `cannot run ${this.bin}: ${e.message}`, { cause: e, step: 'layer fsops' })));
      child.on('close', (code, signal) => {
        if (code === 0) return resolve();
        reject(fsopsError(stderr, code, signal));
      });
      child.stdin.end(encodeFsPlan(plan));
    });
  }
}

function fsopsError(stderr: string, code: number | null, signal: NodeJS.Signals | null): LxrError {
  const line = stderr.trim().split('\n').pop() ?? '';
  try {
    const r = JSON.parse(line) as { step?: string; errno?: string; message?: string };
    // ELOOP/EXDEV: openat2 met a symlink or a way out; the planner should
    // have refused the layer first, but the helper is the last word.
    const escape = r.errno === 'ELOOP' || r.errno === 'EXDEV';
    return new LxrError(escape ? 'LXR_INVALID_ARGUMENT' : 'LXR_INTERNAL', `layer ${r.step ?? 'fsops'}: ${r.message ?? line}`, {
      ...(r.step ? { step: `layer ${r.step}` } : {}),
      ...(r.errno ? { errno: r.errno } : {}),
      ...(escape ? { field: 'layer' } : {}),
    });
  } catch {
    return new LxrError('LXR_INTERNAL', `lxr-fsops failed (${signal ?? `exit ${code}`}): ${line || 'no message'}`, { step: 'layer fsops' });
  }
}

/** Records every call; applies nothing. */
export class FakeFsOps implements FsOps {
  readonly calls: Array<{ dir: string; plan: FsPlan }> = [];
  constructor(private readonly fail?: Error) {}
  async apply(dir: string, plan: FsPlan): Promise<void> {
    this.calls.push({ dir, plan });
    if (this.fail) throw this.fail;
  }
}

const TYPES: Record<string, LayerEntryType> = {
  File: 'file',
  OldFile: 'file',
  ContiguousFile: 'file',
  Directory: 'dir',
  SymbolicLink: 'symlink',
  Link: 'hardlink',
  CharacterDevice: 'char',
  BlockDevice: 'block',
  FIFO: 'fifo',
};

let cachedUmask: number | undefined;
/** The process umask, read without process.umask()'s set-and-restore race. */
function processUmask(): number {
  if (cachedUmask === undefined) {
    const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    cachedUmask = m ? parseInt(m[1]!, 8) : 0o022;
  }
  return cachedUmask;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

function checkInput(input: UnpackInput): void {
  if (typeof input.dest !== 'string' || !path.isAbsolute(input.dest)) throw invalidArgument('dest', 'must be an absolute path');
  for (const k of ['maxBytes', 'maxEntries'] as const) {
    const v = input.limits?.[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw invalidArgument(`limits.${k}`, 'must be a positive integer');
  }
  if (input.expectedDiffId !== undefined && !DIGEST.test(input.expectedDiffId)) {
    throw invalidArgument('expectedDiffId', `${JSON.stringify(input.expectedDiffId)} is not a sha256 digest`);
  }
}

/** node-tar's own refusals (TAR_* codes) are the layer's fault; file system
 *  errors (ENOSPC, EIO, ...) are ours. Both name the entry when known. */
function tarError(e: Error & { entry?: ReadEntry; code?: unknown }): LxrError {
  if (e instanceof LxrError) return e;
  const name = e.entry?.path;
  const code = typeof e.code === 'string' ? e.code : '';
  if (/^E[A-Z0-9]+$/.test(code) && code !== 'ESYMLINK') {
    const what = name !== undefined ? `layer entry ${JSON.stringify(name)}` : 'the layer';
    return new LxrError('LXR_INTERNAL', `unpacking ${what}: ${e.message}`, { errno: code, step: 'unpack layer', cause: e });
  }
  if (name !== undefined) return entryError(name, e.message);
  return new LxrError('LXR_INVALID_ARGUMENT', `invalid layer tar: ${e.message}`, { field: 'layer', cause: e });
}

const limitError = (field: string, what: string, limit: number): LxrError =>
  new LxrError('LXR_RESOURCE_EXHAUSTED', `layer exceeds ${field} (${limit} ${what})`, { field });

/**
 * Unpacks one layer into input.dest (see the module comment). Errors:
 * INVALID_ARGUMENT for a bad or hostile layer (naming the entry), a
 * corrupt stream or a diffID mismatch; RESOURCE_EXHAUSTED for a limit;
 * ALREADY_EXISTS when dest exists.
 */
export async function unpackLayer(input: UnpackInput, deps: { fsops?: FsOps } = {}): Promise<UnpackResult> {
  checkInput(input);
  const compression = compressionForMediaType(input.mediaType);
  const dest = path.resolve(input.dest);
  if (await lstat(dest).then(() => true, () => false)) throw alreadyExists('layer directory', dest);
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${randomBytes(6).toString('hex')}`;
  await mkdir(tmp, { mode: 0o755 });
  try {
    const planner = new LayerPlanner({ umask: processUmask() });
    const { diffId, size } = await extract(input, compression, tmp, planner);
    if (input.expectedDiffId !== undefined && diffId !== input.expectedDiffId) {
      throw new LxrError('LXR_INVALID_ARGUMENT', `layer diffID mismatch: the image config says ${input.expectedDiffId}, the uncompressed layer is ${diffId}`, { field: 'expectedDiffId' });
    }
    await (deps.fsops ?? new LinuxFsOps()).apply(tmp, planner.finish());
    await rename(tmp, dest);
    return { diffId, size, entries: planner.entries };
  } catch (e) {
    return failAfterCleanup(e, [() => removeTemp(tmp)]);
  }
}

/**
 * Renamed away before removal: node-tar may still have file system calls
 * in flight after a failure, and they address paths under tmp; once tmp is
 * gone they fail instead of recreating anything while rm walks the tree.
 */
async function removeTemp(tmp: string): Promise<void> {
  const trash = `${tmp}.trash`;
  try {
    await rename(tmp, trash);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await rm(trash, { recursive: true, force: true });
}

async function extract(input: UnpackInput, compression: ReturnType<typeof compressionForMediaType>, tmp: string, planner: LayerPlanner): Promise<{ diffId: string; size: number }> {
  const { maxBytes, maxEntries } = input.limits;
  const hash = createHash('sha256');
  let size = 0;
  let failure: unknown;
  let sink: Writable | undefined;
  const fail = (e: unknown): void => {
    if (failure === undefined) failure = e;
    sink?.destroy(failure as Error);
  };

  const unpack = new Unpack({
    cwd: tmp,
    strict: true,
    preservePaths: false,
    preserveOwner: true,
    // The tar is already decompressed and measured: node-tar must not
    // decompress again (a gzip inside the tar would escape the byte limit).
    zstd: false,
    brotli: false,
    filter: (_p: string, entry: unknown): boolean => {
      if (failure !== undefined) return false;
      const e = entry as ReadEntry;
      try {
        if (planner.entries >= maxEntries) throw limitError('limits.maxEntries', 'entries', maxEntries);
        return planner.add({
          path: e.path,
          type: TYPES[e.type] ?? 'other',
          typeName: e.type,
          ...(e.linkpath !== undefined ? { linkpath: e.linkpath } : {}),
          ...(e.mode !== undefined ? { mode: e.mode } : {}),
          ...(e.uid !== undefined ? { uid: e.uid } : {}),
          ...(e.gid !== undefined ? { gid: e.gid } : {}),
          ...(e.mtime !== undefined ? { mtimeMs: e.mtime.getTime() } : {}),
        });
      } catch (err) {
        fail(err);
        return false;
      }
    },
  });
  unpack.on('error', (e: Error) => fail(tarError(e)));
  const unpacked = new Promise<void>((resolve) => unpack.on('close', resolve));

  let sniffed = false;
  sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > maxBytes) return cb(limitError('limits.maxBytes', 'uncompressed bytes', maxBytes));
      if (!sniffed) {
        sniffed = true;
        // A tar never starts with these; node-tar would decompress them itself.
        const inner = sniffCompression(chunk, true);
        if (inner !== 'none') return cb(invalidArgument('layer', `the uncompressed layer is itself ${inner} data, not a tar`));
      }
      hash.update(chunk);
      if (unpack.write(chunk)) cb();
      else unpack.once('drain', () => cb());
    },
    final(cb) {
      unpack.end();
      unpacked.then(() => cb(failure as Error | undefined), cb);
    },
  });
  try {
    await pipeline([input.source, ...decompressStages(compression, input.mediaType), sink]);
  } catch (e) {
    // The first failure wins: one from the planner or node-tar destroys the
    // pipeline, and the resulting "premature close" must not replace it.
    throw decompressError(failure ?? e);
  }
  if (failure !== undefined) throw failure;
  return { diffId: `sha256:${hash.digest('hex')}`, size };
}
