// Layer compression: which codec a layer media type names, a cross-check of
// the data's magic bytes against it, and streaming decompressors (gzip from
// node:zlib, zstd from the pure-JS fzstd) that never hold more than a bounded
// amount of output in memory, however well the input compresses.

import { Duplex, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
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
/** Compressed bytes handed to fzstd at once: a run-length block turns 4
 *  input bytes into 128 KiB, so this bounds each step's output to 32 MiB. */
const ZSTD_SLICE = 1024;

const zstdError = (message: string): LxrError =>
  new LxrError('LXR_INVALID_ARGUMENT', `invalid zstd layer: ${message}`, { field: 'layer' });

/**
 * Walks zstd frame and block headers alongside the decoder and refuses
 * windows larger than zstd's default decoder limit: fzstd allocates the
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

function zstdDecompressor(): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Buffer>) {
    const guard = new ZstdFrameGuard();
    let out: Uint8Array[] = [];
    const d = new ZstdDecompress((data) => {
      if (data.length > 0) out.push(data);
    });
    const wrap = (e: unknown): LxrError =>
      e instanceof LxrError ? e : zstdError(e instanceof Error ? e.message : String(e));
    for await (const chunk of source) {
      for (let at = 0; at < chunk.length; at += ZSTD_SLICE) {
        const slice = chunk.subarray(at, at + ZSTD_SLICE);
        try {
          guard.feed(slice);
          d.push(slice);
        } catch (e) {
          throw wrap(e);
        }
        // fzstd hands out views of its window: copy before the next push moves it.
        for (const o of out) yield Buffer.from(o);
        out = [];
      }
    }
    if (!guard.atBoundary) throw zstdError('truncated stream');
    try {
      d.push(new Uint8Array(0), true);
    } catch (e) {
      throw wrap(e);
    }
    for (const o of out) yield Buffer.from(o);
  });
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
