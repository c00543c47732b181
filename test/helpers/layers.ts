// Builders for image layer tarballs used by the unpack tests. Headers are
// written by hand (ustar plus pax records for long names) so that hostile
// entries really carry what an attacker would put there: `../x`, `/abs`,
// symlinks followed by writes through them, hardlinks outside, device nodes
// and odd whiteout names. node-tar's packer would sanitise all of that.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createGzip, gzipSync } from 'node:zlib';

export type EntryType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  path: string;
  type?: EntryType;
  body?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  /** Symlink target or hardlink source path (tar's linkname). */
  linkpath?: string;
  devmajor?: number;
  devminor?: number;
}

const TYPEFLAG: Record<EntryType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

function octal(buf: Buffer, off: number, len: number, value: number): void {
  buf.write(value.toString(8).padStart(len - 1, '0') + '\0', off, len, 'ascii');
}

function header(name: string, typeflag: string, size: number, e: Partial<TarEntry>): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  octal(h, 100, 8, e.mode ?? 0o644);
  octal(h, 108, 8, e.uid ?? 0);
  octal(h, 116, 8, e.gid ?? 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, e.mtime ?? 1_700_000_000);
  h.write(typeflag, 156, 1, 'ascii');
  if (e.linkpath !== undefined) h.write(e.linkpath, 157, 100, 'utf8');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  octal(h, 329, 8, e.devmajor ?? 0);
  octal(h, 337, 8, e.devminor ?? 0);
  // The checksum is computed with its own field read as eight spaces.
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512);

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** One entry's blocks (a pax header first when a name does not fit ustar). */
export function tarEntry(e: TarEntry): Buffer {
  const type = e.type ?? 'file';
  const body = e.body === undefined ? Buffer.alloc(0) : Buffer.from(e.body);
  const parts: Buffer[] = [];
  const long = (s: string | undefined): boolean => s !== undefined && Buffer.byteLength(s) > 99;
  if (long(e.path) || long(e.linkpath)) {
    let pax = '';
    if (long(e.path)) pax += paxRecord('path', e.path);
    if (long(e.linkpath)) pax += paxRecord('linkpath', e.linkpath!);
    const pb = Buffer.from(pax);
    parts.push(header('PaxHeader', 'x', pb.length, {}), pb, pad(pb.length));
  }
  const size = type === 'file' ? body.length : 0;
  parts.push(header(e.path.slice(0, 99), TYPEFLAG[type], size, e));
  if (size > 0) parts.push(body, pad(size));
  return Buffer.concat(parts);
}

/** A whole uncompressed layer: the entries, then two zero blocks. */
export function tarLayer(entries: TarEntry[]): Buffer {
  return Buffer.concat([...entries.map(tarEntry), Buffer.alloc(1024)]);
}

export const gzipLayer = (tar: Buffer): Buffer => gzipSync(tar);

/** zstd through Debian's `zstd` CLI (scripts/install.sh installs it). */
export const zstdLayer = (tar: Buffer, args: string[] = []): Buffer =>
  execFileSync('zstd', ['-q', '-c', ...args], { input: tar, maxBuffer: 1 << 30 });

export const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/**
 * A gzip bomb: a tar with one file of `bytes` zeros, gzipped while it is
 * generated so the test never holds the uncompressed layer in memory.
 */
export async function gzipBomb(bytes: number): Promise<Buffer> {
  const gz = createGzip({ level: 9 });
  const out: Buffer[] = [];
  gz.on('data', (c: Buffer) => out.push(c));
  const done = new Promise<void>((resolve, reject) => {
    gz.on('end', resolve);
    gz.on('error', reject);
  });
  const write = (b: Buffer): Promise<void> =>
    new Promise((resolve) => {
      if (gz.write(b)) resolve();
      else gz.once('drain', resolve);
    });
  await write(header('zeros', '0', bytes, { mode: 0o644 }));
  const chunk = Buffer.alloc(1 << 20);
  for (let left = bytes; left > 0; left -= chunk.length) await write(left >= chunk.length ? chunk : chunk.subarray(0, left));
  await write(Buffer.concat([pad(bytes), Buffer.alloc(1024)]));
  gz.end();
  await done;
  return Buffer.concat(out);
}

export const MEDIA = {
  tar: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;
