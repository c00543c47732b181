// A small streaming tar reader for image layers: ustar, pax (per-entry 'x'
// and global 'g' records) and GNU long names ('L', 'K'), numbers in octal or
// GNU base-256. It only parses: each entry's header (with pax / long-name
// overrides applied) goes to the sink, then its body as slices of the input
// chunks, then an end call; the sink may return a promise to slow the
// reader down (backpressure). Checksums are verified; a stream that ends
// inside an entry is "Truncated input". Everything after the end-of-archive
// marker (two zero blocks) is ignored.

import { LxrError } from '../../proto/shared/errors.js';

export interface TarHeader {
  path: string;
  /** '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo, '7' contiguous, ... */
  typeflag: string;
  /** node-tar's name for the type (for messages). */
  typeName: string;
  linkpath: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch (fractional with pax). */
  mtime: number;
}

export interface TarSink {
  /** A header; body bytes (if any) follow through data(), then end(). */
  entry(h: TarHeader): void | Promise<void>;
  data(chunk: Buffer): void | Promise<void>;
  end(): void | Promise<void>;
}

const BLOCK = 512;
/** Largest pax or GNU long-name record accepted. */
const MAX_META = 1 << 20;

export const tarFormatError = (problem: string): LxrError =>
  new LxrError('LXR_INVALID_ARGUMENT', `invalid layer tar: ${problem}`, { field: 'layer' });

const TYPE_NAMES: Record<string, string> = {
  '0': 'File',
  '\0': 'OldFile',
  '1': 'Link',
  '2': 'SymbolicLink',
  '3': 'CharacterDevice',
  '4': 'BlockDevice',
  '5': 'Directory',
  '6': 'FIFO',
  '7': 'ContiguousFile',
  g: 'GlobalExtendedHeader',
  x: 'ExtendedHeader',
  A: 'SolarisACL',
  D: 'GNUDumpDir',
  I: 'Inode',
  K: 'NextFileHasLongLinkpath',
  L: 'NextFileHasLongPath',
  M: 'ContinuationFile',
  N: 'OldGnuLongPath',
  S: 'SparseFile',
  V: 'TapeVolumeHeader',
  X: 'OldExtendedHeader',
};

function cstring(b: Buffer, off: number, len: number): string {
  let end = off;
  const max = off + len;
  while (end < max && b[end] !== 0) end++;
  return b.toString('utf8', off, end);
}

function num(b: Buffer, off: number, len: number, field: string): number {
  if ((b[off]! & 0x80) !== 0) {
    // GNU base-256: big-endian, the top bit of the first byte set; 0xff = negative.
    if (b[off] === 0xff) throw tarFormatError(`negative ${field} in a header`);
    let v = b[off]! & 0x7f;
    for (let i = off + 1; i < off + len; i++) {
      v = v * 256 + b[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw tarFormatError(`${field} too large in a header`);
    }
    return v;
  }
  const s = b.toString('latin1', off, off + len).replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw tarFormatError(`bad ${field} ${JSON.stringify(s)} in a header`);
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw tarFormatError(`${field} too large in a header`);
  return v;
}

function checksumOk(h: Buffer): boolean {
  const stored = num(h, 148, 8, 'checksum');
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const c = h[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

function isZero(b: Buffer, off: number): boolean {
  for (let i = off; i < off + BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

type PaxFields = Partial<Pick<TarHeader, 'path' | 'linkpath' | 'size' | 'uid' | 'gid' | 'mtime'>>;

function parsePax(buf: Buffer): PaxFields {
  const out: PaxFields = {};
  let off = 0;
  while (off < buf.length) {
    if (buf[off] === 0) break; // padding some writers leave
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) throw tarFormatError('bad pax record');
    const len = Number(buf.toString('latin1', off, sp));
    if (!Number.isSafeInteger(len) || len <= sp - off + 1 || off + len > buf.length || buf[off + len - 1] !== 0x0a) throw tarFormatError('bad pax record length');
    const rec = buf.toString('utf8', sp + 1, off + len - 1);
    off += len;
    const eq = rec.indexOf('=');
    if (eq <= 0) throw tarFormatError('bad pax record');
    const key = rec.slice(0, eq);
    const value = rec.slice(eq + 1);
    const int = (): number => {
      if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) throw tarFormatError(`bad pax ${key} ${JSON.stringify(value)}`);
      return Number(value);
    };
    switch (key) {
      case 'path':
        out.path = value;
        break;
      case 'linkpath':
        out.linkpath = value;
        break;
      case 'size':
        out.size = int();
        break;
      case 'uid':
        out.uid = int();
        break;
      case 'gid':
        out.gid = int();
        break;
      case 'mtime': {
        const t = Number(value);
        if (!/^-?[0-9]+(\.[0-9]*)?$/.test(value) || !Number.isFinite(t)) throw tarFormatError(`bad pax mtime ${JSON.stringify(value)}`);
        out.mtime = t;
        break;
      }
      default:
        // xattrs, atime, uname, ... are not used.
        break;
    }
  }
  return out;
}

type State =
  | { kind: 'header' }
  | { kind: 'body'; left: number; pad: number }
  | { kind: 'meta'; typeflag: string; buf: Buffer; filled: number; pad: number }
  | { kind: 'skip'; left: number }
  | { kind: 'done' };

/** Feeds tar bytes to a TarSink. */
export class TarReader {
  private state: State = { kind: 'header' };
  private partial: Buffer | null = null; // an incomplete header block
  private global: PaxFields = {};
  private pax: PaxFields | null = null;
  private longPath: string | null = null;
  private longLink: string | null = null;
  private zeroBlocks = 0;

  constructor(private readonly sink: TarSink) {}

  /** Whether the end-of-archive marker was seen. */
  get ended(): boolean {
    return this.state.kind === 'done';
  }

  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    if (this.partial !== null) {
      const need = BLOCK - this.partial.length;
      const take = Math.min(need, chunk.length);
      this.partial = Buffer.concat([this.partial, chunk.subarray(0, take)]);
      off = take;
      if (this.partial.length < BLOCK) return;
      const block = this.partial;
      this.partial = null;
      await this.header(block, 0);
    }
    while (off < chunk.length) {
      const st = this.state;
      switch (st.kind) {
        case 'done':
          return;
        case 'header': {
          if (chunk.length - off < BLOCK) {
            this.partial = Buffer.from(chunk.subarray(off));
            return;
          }
          await this.header(chunk, off);
          off += BLOCK;
          break;
        }
        case 'body': {
          if (st.left > 0) {
            const n = Math.min(st.left, chunk.length - off);
            st.left -= n;
            const p = this.sink.data(chunk.subarray(off, off + n));
            off += n;
            if (p) await p;
          }
          if (st.left === 0) {
            const p = this.sink.end();
            this.state = st.pad > 0 ? { kind: 'skip', left: st.pad } : { kind: 'header' };
            if (p) await p;
          }
          break;
        }
        case 'meta': {
          const n = Math.min(st.buf.length - st.filled, chunk.length - off);
          chunk.copy(st.buf, st.filled, off, off + n);
          st.filled += n;
          off += n;
          if (st.filled === st.buf.length) {
            this.meta(st.typeflag, st.buf);
            this.state = st.pad > 0 ? { kind: 'skip', left: st.pad } : { kind: 'header' };
          }
          break;
        }
        case 'skip': {
          const n = Math.min(st.left, chunk.length - off);
          st.left -= n;
          off += n;
          if (st.left === 0) this.state = { kind: 'header' };
          break;
        }
      }
    }
  }

  /** The input ended: fails unless it ended between entries. */
  async end(): Promise<void> {
    const st = this.state;
    if (st.kind === 'done') return;
    if (this.partial !== null || st.kind !== 'header' || this.pax !== null || this.longPath !== null || this.longLink !== null) {
      throw tarFormatError('Truncated input (the tar ends inside an entry)');
    }
    // No end-of-archive marker: accepted, as GNU tar does.
  }

  private async header(b: Buffer, off: number): Promise<void> {
    if (isZero(b, off)) {
      if (++this.zeroBlocks >= 2) this.state = { kind: 'done' };
      return;
    }
    this.zeroBlocks = 0;
    const h = off === 0 && b.length === BLOCK ? b : b.subarray(off, off + BLOCK);
    if (!checksumOk(h)) throw tarFormatError('bad header checksum (not a tar, or a corrupt one)');
    let typeflag = String.fromCharCode(h[156]!);
    let size = num(h, 124, 12, 'size');
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > MAX_META) throw tarFormatError(`a ${TYPE_NAMES[typeflag]} record of ${size} bytes (limit ${MAX_META})`);
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      const buf = Buffer.alloc(size);
      if (size === 0) this.meta(typeflag, buf);
      else this.state = { kind: 'meta', typeflag, buf, filled: 0, pad };
      return;
    }
    const magic = h.toString('latin1', 257, 263);
    let path = cstring(h, 0, 100);
    if (magic === 'ustar\0') {
      const prefix = cstring(h, 345, 155);
      if (prefix !== '') path = `${prefix}/${path}`;
    }
    const pax = { ...this.global, ...(this.pax ?? {}) };
    if (this.longPath !== null) path = this.longPath;
    if (pax.path !== undefined) path = pax.path;
    let linkpath = cstring(h, 157, 100);
    if (this.longLink !== null) linkpath = this.longLink;
    if (pax.linkpath !== undefined) linkpath = pax.linkpath;
    if (pax.size !== undefined) size = pax.size;
    // Pre-POSIX tars mark directories as old-style files whose name ends in '/'.
    if (typeflag === '\0' && path.endsWith('/')) typeflag = '5';
    const header: TarHeader = {
      path,
      typeflag,
      typeName: TYPE_NAMES[typeflag] ?? `unknown type ${JSON.stringify(typeflag)}`,
      linkpath,
      mode: num(h, 100, 8, 'mode'),
      uid: pax.uid ?? num(h, 108, 8, 'uid'),
      gid: pax.gid ?? num(h, 116, 8, 'gid'),
      size,
      mtime: pax.mtime ?? num(h, 136, 12, 'mtime'),
    };
    this.pax = null;
    this.longPath = null;
    this.longLink = null;
    // Hardlinks, symlinks, devices, FIFOs and directories carry no body in
    // practice; a size on them is skipped like any body.
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    this.state = { kind: 'body', left: size, pad };
    await this.sink.entry(header);
    if (size === 0) {
      const p = this.sink.end();
      this.state = pad > 0 ? { kind: 'skip', left: pad } : { kind: 'header' };
      if (p) await p;
    }
  }

  private meta(typeflag: string, buf: Buffer): void {
    switch (typeflag) {
      case 'x':
        this.pax = { ...(this.pax ?? {}), ...parsePax(buf) };
        break;
      case 'g':
        this.global = { ...this.global, ...parsePax(buf) };
        break;
      case 'L':
        this.longPath = cstring(buf, 0, buf.length);
        break;
      case 'K':
        this.longLink = cstring(buf, 0, buf.length);
        break;
    }
  }
}
