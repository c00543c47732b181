// Layer compression: which codec a layer media type names, a cross-check of
// the data's magic bytes against it, and streaming decompressors (gzip from
// node:zlib, zstd from Debian's zstd program in a child process) that never
// hold more than a bounded amount of output in memory, however well the
// input compresses.

import { spawn } from 'node:child_process';
import { Duplex, PassThrough, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { LxrError, invalidArgument } from '../../proto/shared/errors.js';

export type Compression = 'none' | 'gzip' | 'zstd';

const MEDIA_TYPES: Record<string, Compression> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
  'application/vnd.docker.image.rootfs.diff.tar': 'none',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.diff.tar.zstd': 'zstd',
};

export function compressionForMediaType(mediaType: string): Compression {
  const c = Object.hasOwn(MEDIA_TYPES, mediaType) ? MEDIA_TYPES[mediaType] : undefined;
  if (c === undefined) throw invalidArgument('mediaType', `unsupported layer media type ${JSON.stringify(mediaType)}`);
  return c;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** What the first bytes look like; null while too few bytes are known to tell. */
export function sniffCompression(head: Uint8Array, ended = false): Compression | null {
  const starts = (m: number[]): boolean | null => {
    for (let i = 0; i < m.length; i++) {
      if (i >= head.length) return ended ? false : null;
      if (head[i] !== m[i]) return false;
    }
    return true;
  };
  const gz = starts(GZIP_MAGIC);
  const zs = starts(ZSTD_MAGIC);
  if (gz === true) return 'gzip';
  if (zs === true) return 'zstd';
  if (gz === null || zs === null) return null;
  return 'none';
}

const describe = (c: Compression): string => (c === 'none' ? 'an uncompressed tar' : `${c} data`);

/** Passes bytes through once their magic agrees with the declared compression. */
class MagicCheck extends Transform {
  private head: Buffer | null = Buffer.alloc(0);
  constructor(private readonly expected: Compression, private readonly mediaType: string) {
    super();
  }
  private check(ended: boolean): Error | undefined {
    const seen = sniffCompression(this.head!, ended);
    if (seen === null) return undefined;
    if (seen !== this.expected) {
      return invalidArgument('mediaType', `media type ${JSON.stringify(this.mediaType)} says ${describe(this.expected)}, but the layer data is ${describe(seen)}`);
    }
    this.push(this.head);
    this.head = null;
    return undefined;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.head === null) return cb(null, chunk);
    this.head = Buffer.concat([this.head, chunk]);
    cb(this.check(false));
  }
  override _flush(cb: TransformCallback): void {
    if (this.head !== null && this.head.length > 0) return cb(this.check(true));
    cb();
  }
}

/** zstd's own default decoder limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27). */
export const ZSTD_MAX_WINDOW = 128 * 1024 * 1024;

const zstdError = (message: string): LxrError =>
  new LxrError('LXR_INVALID_ARGUMENT', `invalid zstd layer: ${message}`, { field: 'layer' });

/**
 * Walks zstd frame and block headers alongside the decoder and refuses
 * windows larger than zstd's default decoder limit: a decoder allocates the
 * declared window up front and moves it on every block, so a hostile header
 * (up to 2 GiB) would cost memory and CPU long before any byte limit.
 */
export class ZstdFrameGuard {
  private need = 4;
  private head: number[] = [];
  private skip = 0;
  private state: 'magic' | 'frame' | 'skippable' | 'block' = 'magic';
  private checksum = false;

  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        i += n;
        this.skip -= n;
        continue;
      }
      while (this.head.length < this.need && i < chunk.length) this.head.push(chunk[i++]!);
      if (this.head.length === this.need) this.header();
    }
  }

  /** True at a frame boundary (where a stream may end). */
  get atBoundary(): boolean {
    return this.state === 'magic' && this.head.length === 0 && this.skip === 0;
  }

  private header(): void {
    const h = this.head;
    switch (this.state) {
      case 'magic': {
        const magic = (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0;
        if (magic === 0xfd2fb528) {
          this.state = 'frame';
          this.need = 5;
          return;
        }
        if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
          this.state = 'skippable';
          this.need = 8;
          return;
        }
        throw zstdError('bad frame magic');
      }
      case 'skippable': {
        this.skip = (h[4]! | (h[5]! << 8) | (h[6]! << 16) | (h[7]! << 24)) >>> 0;
        return this.nextFrame();
      }
      case 'frame': {
        const fhd = h[4]!;
        const singleSegment = (fhd >> 5) & 1;
        const fcsFlag = fhd >> 6;
        const dictBytes = [0, 1, 2, 4][fhd & 3]!;
        const fcsBytes = fcsFlag === 0 ? singleSegment : 1 << fcsFlag;
        if (fhd & 0x08) throw zstdError('reserved frame header bit set');
        const size = 5 + (singleSegment ? 0 : 1) + dictBytes + fcsBytes;
        if (h.length < size) {
          this.need = size;
          return;
        }
        let window: number;
        if (!singleSegment) {
          const wd = h[5]!;
          const base = 2 ** (10 + (wd >> 3));
          window = base + (base / 8) * (wd & 7);
        } else {
          let fcs = 0;
          const at = 5 + dictBytes;
          for (let b = fcsBytes - 1; b >= 0; b--) fcs = fcs * 256 + h[at + b]!;
          window = fcsBytes === 2 ? fcs + 256 : fcs;
        }
        if (window > ZSTD_MAX_WINDOW) {
          throw zstdError(`frame window of ${window} bytes exceeds the ${ZSTD_MAX_WINDOW}-byte decoder limit`);
        }
        this.checksum = ((fhd >> 2) & 1) === 1;
        this.state = 'block';
        this.need = 3;
        this.head = [];
        return;
      }
      case 'block': {
        const bh = h[0]! | (h[1]! << 8) | (h[2]! << 16);
        const type = (bh >> 1) & 3;
        if (type === 3) throw zstdError('reserved block type');
        this.skip = type === 1 ? 1 : bh >> 3;
        this.head = [];
        if (bh & 1) {
          this.skip += this.checksum ? 4 : 0;
          this.nextFrame();
        }
        return;
      }
    }
  }

  private nextFrame(): void {
    this.state = 'magic';
    this.need = 4;
    this.head = [];
  }
}

/**
 * zstd through Debian's zstd program, as a streaming child process: a pure
 * JavaScript decoder runs on the event loop, where a tiny hostile frame (a
 * huge window, thousands of one-byte blocks) can stall the whole agent for
 * minutes; the child's cost follows the data and never blocks the loop. The
 * frame guard still refuses oversized windows up front with a clear error,
 * and --memory makes the decoder enforce the same limit.
 */
function zstdDecompressor(): Duplex {
  const guard = new ZstdFrameGuard();
  const child = spawn('zstd', ['-d', '-c', '-q', `--memory=${ZSTD_MAX_WINDOW / (1024 * 1024)}MB`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let spawnError: Error | null = null;
  const out = new PassThrough();
  const input = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        guard.feed(chunk);
        cb(null, chunk);
      } catch (e) {
        cb(e instanceof LxrError ? e : zstdError(e instanceof Error ? e.message : String(e)));
      }
    },
    flush(cb) {
      cb(guard.atBoundary ? null : zstdError('truncated stream'));
    },
  });
  child.on('error', (e) => (spawnError = e));
  child.stdin.on('error', () => {}); // the child's exit status says what went wrong
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 2000) stderr += d.toString();
  });
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  child.on('close', (code) => {
    if (code === 0 && !spawnError) out.end();
    else if (spawnError) out.destroy(zstdError(`cannot run zstd (Debian package zstd): ${spawnError.message}`));
    else out.destroy(zstdError(stderr.trim().replace(/^zstd: /, '') || `zstd exited with ${code}`));
  });
  const duplex = Duplex.from({ writable: input, readable: out });
  duplex.on('close', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return duplex;
}

/** zlib's errors (Z_DATA_ERROR, Z_BUF_ERROR for a truncated stream) say
 *  nothing about what was being read: name the layer. Others pass unchanged. */
export function decompressError(e: unknown): unknown {
  const code = (e as { code?: unknown } | null)?.code;
  if (!(e instanceof LxrError) && e instanceof Error && typeof code === 'string' && code.startsWith('Z_')) {
    return new LxrError('LXR_INVALID_ARGUMENT', `invalid gzip layer: ${e.message}`, { field: 'layer', cause: e });
  }
  return e;
}

/**
 * The stages that take the layer blob as stored and yield the tar, for
 * stream.pipeline. They fail with INVALID_ARGUMENT when the data's magic
 * disagrees with mediaType or the data is corrupt or truncated (pass gzip
 * errors through decompressError).
 */
export function decompressStages(compression: Compression, mediaType: string): Duplex[] {
  const check = new MagicCheck(compression, mediaType);
  if (compression === 'none') return [check];
  return [check, compression === 'gzip' ? createGunzip() : zstdDecompressor()];
}
