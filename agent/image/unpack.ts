// Image layer unpacking: one layer blob (tar, gzip or zstd) becomes one
// directory usable as an overlayfs lower dir. The tar streams through the
// decompressor, a meter (sha256 for the diffID, the byte limit) and our own
// tar reader (tar-reader.ts), while LayerPlanner (whiteout.ts) judges every
// entry before anything of it is written. Everything lands in a temporary
// sibling that is renamed into place only when the whole layer succeeded; on
// any failure it is removed.
//
// The extractor here (LayerWriter) writes only regular files, hardlinks and
// directories, with the planner's normalized paths (relative, no '..').
// Symlinks, whiteouts, opaque dirs and the final modes/owners/mtimes of
// directories and of files whose mode open() cannot give (set-id bits, bits
// the umask takes) are done afterwards, in one run of native/fsops
// (lxr-fsops), which resolves every path with openat2 beneath the layer dir
// and follows no symlink. So while the extractor runs, the temp dir holds
// no symlink at all and no path can lead out of it; files are created with
// O_EXCL | O_NOFOLLOW all the same.
//
// (node-tar's extractor did this job before; it spent most of its time in
// its own bookkeeping, about 2x slower than this on layers with thousands of
// small files, where file creation in the kernel is the real cost.)

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs, { constants as fsConstants, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { lstat, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { findNativeBinary } from '../native-bin.js';
import { promisify } from 'node:util';
import { LxrError, alreadyExists, failAfterCleanup, invalidArgument } from '../../proto/shared/errors.js';
import { compressionForMediaType, decompressError, decompressStages, sniffCompression } from './decompress.js';
import { TarReader, type TarHeader, type TarSink } from './tar-reader.js';
import { LayerPlanner, normalizeEntryPath, type FsPlan, type LayerEntryType } from './whiteout.js';

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
  return findNativeBinary('lxr-fsops', 'LXR_FSOPS') ?? 'lxr-fsops';
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
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '5': 'dir',
  '2': 'symlink',
  '1': 'hardlink',
  '3': 'char',
  '4': 'block',
  '6': 'fifo',
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
 * Renamed away before removal: extract() waits for its own file system
 * calls to settle, but should any still be in flight they address paths
 * under tmp; once tmp is gone they fail instead of recreating anything
 * while rm walks the tree.
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
  const writer = new LayerWriter(tmp, planner, maxEntries, fail);
  const reader = new TarReader(writer);

  let sniffed = false;
  let reading: Promise<void> | undefined;
  sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > maxBytes) return cb(limitError('limits.maxBytes', 'uncompressed bytes', maxBytes));
      if (!sniffed) {
        sniffed = true;
        // A tar never starts with these; a compressed tar inside would escape the byte limit.
        const inner = sniffCompression(chunk, true);
        if (inner !== 'none') return cb(invalidArgument('layer', `the uncompressed layer is itself ${inner} data, not a tar`));
      }
      hash.update(chunk);
      if (reader.ended) return cb();
      reading = reader.write(chunk);
      reading.then(() => cb(failure as Error | undefined), (e: unknown) => cb(e as Error));
    },
    final(cb) {
      reader
        .end()
        .then(() => writer.drain())
        .then(() => cb(failure as Error | undefined), (e: unknown) => cb(e as Error));
    },
  });
  try {
    await pipeline([input.source, ...decompressStages(compression, input.mediaType), sink]);
  } catch (e) {
    // The first failure wins: one from the planner or the writer destroys
    // the pipeline, and the resulting "premature close" must not replace it.
    failure ??= e;
  }
  // Nothing may still be writing into tmp once this returns: the reader's
  // last chunk (it may be writing a big file's data), then every task.
  await reading?.catch(() => {});
  await writer.settle();
  if (failure !== undefined) throw decompressError(failure);
  return { diffId: `sha256:${hash.digest('hex')}`, size };
}

/** Regular files up to this size are buffered and written by a background task. */
const SMALL_FILE = 256 * 1024;
/** Background writes in flight, and the bytes they hold, before the reader waits. */
const MAX_TASKS = 64;
const MAX_TASK_BYTES = 32 << 20;

type Body = { kind: 'skip' } | { kind: 'small'; path: string; h: TarHeader; buf: Buffer; filled: number } | { kind: 'big'; path: string; h: TarHeader; fd: number };

/**
 * Writes what the planner accepts: directories, regular files and
 * hardlinks, beneath tmp. Paths are the planner's normalized ones (no '..',
 * not absolute), and no symlink exists in tmp while this runs (symlinks are
 * made afterwards by lxr-fsops), so no path can leave tmp; files are still
 * created with O_EXCL | O_NOFOLLOW. Small files are written by background
 * tasks (a few in flight, so file creation overlaps in the thread pool),
 * each ordered after its parent directory and after any earlier operation
 * on the same path (or, for a hardlink, its target); big files are written
 * as their data arrives, with backpressure.
 */
class LayerWriter implements TarSink {
  /** Directory path -> its creation. */
  private readonly dirs = new Map<string, Promise<void>>([['', Promise.resolve()]]);
  /** File path -> the last operation that made it. */
  private readonly files = new Map<string, Promise<void>>();
  private readonly tasks = new Set<Promise<void>>();
  private taskBytes = 0;
  private body: Body = { kind: 'skip' };
  private waiters: Array<() => void> = [];

  constructor(
    private readonly root: string,
    private readonly planner: LayerPlanner,
    private readonly maxEntries: number,
    private readonly fail: (e: unknown) => void,
  ) {}

  private failed = false;
  private onError = (e: unknown, entry?: string): void => {
    this.failed = true;
    this.fail(fsError(e, entry));
  };

  entry(h: TarHeader): void | Promise<void> {
    this.body = { kind: 'skip' };
    if (this.failed) return;
    const type = TYPES[h.typeflag] ?? 'other';
    if (this.planner.entries >= this.maxEntries) throw limitError('limits.maxEntries', 'entries', this.maxEntries);
    const write = this.planner.add({
      path: h.path,
      type,
      typeName: h.typeName,
      ...(h.linkpath !== '' ? { linkpath: h.linkpath } : {}),
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      mtimeMs: h.mtime * 1000,
    });
    if (!write) return;
    // The planner accepted it, so this cannot throw.
    const rel = normalizeEntryPath(h.path);
    if (type === 'dir') {
      this.ensureDir(rel).catch((e: unknown) => this.onError(e, h.path));
      return;
    }
    if (type === 'hardlink') {
      const target = normalizeEntryPath(h.linkpath);
      const deps = [this.ensureDir(parentOf(rel)), this.files.get(rel), this.files.get(target)];
      const existed = this.files.has(rel);
      return this.task(rel, 0, h.path, async () => {
        await Promise.all(deps);
        if (existed) await fsp.unlink(this.at(rel));
        await fsp.link(this.at(target), this.at(rel));
      });
    }
    // A regular file.
    if (h.size <= SMALL_FILE) {
      this.body = { kind: 'small', path: rel, h, buf: Buffer.allocUnsafe(h.size), filled: 0 };
      return;
    }
    return this.openBig(rel, h);
  }

  data(chunk: Buffer): void | Promise<void> {
    const b = this.body;
    if (this.failed) return;
    if (b.kind === 'small') {
      chunk.copy(b.buf, b.filled);
      b.filled += chunk.length;
    } else if (b.kind === 'big') {
      return writeAll(b.fd, chunk).catch((e: unknown) => {
        this.body = { kind: 'skip' };
        closeQuietly(b.fd);
        throw fsError(e, b.h.path);
      });
    }
  }

  end(): void | Promise<void> {
    const b = this.body;
    this.body = { kind: 'skip' };
    if (this.failed) {
      if (b.kind === 'big') closeQuietly(b.fd);
      return;
    }
    if (b.kind === 'small') {
      const { path: rel, h, buf } = b;
      const deps = [this.ensureDir(parentOf(rel)), this.files.get(rel)];
      const existed = this.files.has(rel);
      return this.task(rel, buf.length, h.path, async () => {
        await Promise.all(deps);
        const file = this.at(rel);
        if (existed) await fsp.unlink(file);
        const fd = await fsOpen(file, CREATE_FLAGS, h.mode & 0o777);
        try {
          if (buf.length > 0) await writeAll(fd, buf);
          await finishFile(fd, h);
        } finally {
          closeQuietly(fd);
        }
      });
    }
    if (b.kind === 'big') {
      return finishFile(b.fd, b.h).then(
        () => fsClose(b.fd),
        (e: unknown) => {
          closeQuietly(b.fd);
          throw fsError(e, b.h.path);
        },
      );
    }
  }

  /** Waits for every background task; the first failure is reported by fail(). */
  async drain(): Promise<void> {
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
  }

  /** Like drain, also after a failure (the caller removes tmp next). */
  async settle(): Promise<void> {
    this.failed = true;
    const b = this.body;
    this.body = { kind: 'skip' };
    if (b.kind === 'big') closeQuietly(b.fd);
    await this.drain();
  }

  private at(rel: string): string {
    return `${this.root}/${rel}`;
  }

  private async openBig(rel: string, h: TarHeader): Promise<void> {
    await Promise.all([this.ensureDir(parentOf(rel)), this.files.get(rel)]).catch(() => {});
    if (this.failed) return;
    const file = this.at(rel);
    try {
      if (this.files.has(rel)) await fsp.unlink(file);
      const fd = await fsOpen(file, CREATE_FLAGS, h.mode & 0o777);
      this.body = { kind: 'big', path: rel, h, fd };
    } catch (e) {
      throw fsError(e, h.path);
    }
    // Written inline, before the next entry is read: nothing to wait for.
    this.files.set(rel, Promise.resolve());
  }

  private ensureDir(rel: string): Promise<void> {
    let p = this.dirs.get(rel);
    if (p === undefined) {
      const parent = this.ensureDir(parentOf(rel));
      p = parent.then(() => fsp.mkdir(this.at(rel), 0o755));
      // Failures are reported by whoever waits on the directory.
      p.catch(() => {});
      this.dirs.set(rel, p);
    }
    return p;
  }

  /** Runs op in the background, ordered after earlier ones on the same path. */
  private task(rel: string, bytes: number, entry: string, op: () => Promise<void>): void | Promise<void> {
    const t = op().then(
      () => {},
      (e: unknown) => this.onError(e, entry),
    );
    this.files.set(rel, t);
    this.tasks.add(t);
    this.taskBytes += bytes;
    void t.then(() => {
      this.tasks.delete(t);
      this.taskBytes -= bytes;
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
    if (this.tasks.size >= MAX_TASKS || this.taskBytes >= MAX_TASK_BYTES) {
      return new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}

const parentOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');

const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW; // libuv adds O_CLOEXEC

const fsOpen = promisify(fs.open) as (path: string, flags: number, mode: number) => Promise<number>;
const fsWrite = (fd: number, buf: Buffer, off: number, len: number): Promise<number> =>
  new Promise((resolve, reject) => fs.write(fd, buf, off, len, null, (e, n) => (e ? reject(e) : resolve(n))));
const fsClose = promisify(fs.close);
const fsFchown = promisify(fs.fchown);
const fsFutimes = promisify(fs.futimes);

async function writeAll(fd: number, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length; ) off += await fsWrite(fd, buf, off, buf.length - off);
}

/** Owner and times, on the open file (the mode was given to open; the plan fixes set-id bits). */
async function finishFile(fd: number, h: TarHeader): Promise<void> {
  await fsFchown(fd, h.uid, h.gid);
  await fsFutimes(fd, h.mtime, h.mtime);
}

function closeQuietly(fd: number): void {
  fs.close(fd, () => {});
}

/** File system errors are ours (LXR_INTERNAL), naming the entry; LxrErrors pass through. */
function fsError(e: unknown, entry?: string): unknown {
  if (e instanceof LxrError || !(e instanceof Error)) return e;
  const code = (e as NodeJS.ErrnoException).code;
  const what = entry !== undefined ? `layer entry ${JSON.stringify(entry)}` : 'the layer';
  return new LxrError('LXR_INTERNAL', `unpacking ${what}: ${e.message}`, { ...(typeof code === 'string' ? { errno: code } : {}), step: 'unpack layer', cause: e });
}
