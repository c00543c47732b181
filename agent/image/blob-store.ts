// The content-addressed blob store: manifests, configs and layers kept under
// <root>/blobs/<algorithm>/<hex>, each verified against its digest before it
// lands, so nothing under blobs/ is ever partial, corrupt or tampered in transit.
//
// Layout:
//   <root>/blobs/sha256/<hex>                 verified blobs, read-only (0444)
//   <root>/ingest/<algo>-<hex>.<pid>.<rand>.partial   downloads in progress
//
// Concurrency: within a process, ingests of one digest share one download.
// Across processes there is no lock: each writes its own partial file and
// renames it into place only once verified. rename(2) is atomic and both
// files hold the same verified bytes, so the race is benign: at worst the
// content is fetched twice. This was chosen over an O_EXCL lock file because
// a lock left by a crashed process would block every later pull of that
// digest until something decided the lock was stale.
//
// Partial downloads are not resumed: a failed or cancelled ingest removes its
// partial file and the next attempt starts from byte 0.

import { randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline as pipelineCb, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { failAfterCleanup, invalidArgument, LxrError, notFound } from '../../proto/shared/errors.js';
import { checkSize, type Digest, type DigestAlgorithm, digestOf, DigestVerifier, parseDigest, sizeMismatch } from './digest.js';

export interface BlobInfo {
  digest: Digest;
  size: number;
}

export interface IngestResult extends BlobInfo {
  /** True when the blob was already in the store and nothing was fetched. */
  existed: boolean;
}

export interface IngestOptions {
  /** Bytes written so far, and the expected total when known. */
  onProgress?(done: number, total?: number): void;
  /** Cancels this caller's wait; the shared download stops once no caller waits for it. */
  signal?: AbortSignal;
}

/**
 * Produces the blob's bytes. Called at most once per download, and only when
 * the blob is missing. The signal fires when the download is cancelled, so a
 * registry client can abort its HTTP request.
 */
export type BlobSource = (signal: AbortSignal) => Promise<Readable> | Readable;

export interface BlobStoreOptions {
  /** Default size cap for readJson (manifests, configs). */
  jsonLimit?: number;
}

/** Docker's cap on manifest size; image configs are far smaller in practice. */
export const DEFAULT_JSON_LIMIT = 4 * 1024 * 1024;

const ALGORITHMS: readonly DigestAlgorithm[] = ['sha256', 'sha512'];
const PARTIAL_RE = /^[a-z0-9]+-[0-9a-f]+\.(\d+)\.[0-9a-f]+\.partial$/;

/** One download, shared by every ingest of its digest in this process. */
interface Flight {
  promise: Promise<IngestResult>;
  /** Aborted when the last waiter cancels: nobody wants the bytes any more. */
  controller: AbortController;
  waiters: number;
  settled: boolean;
  listeners: Set<(done: number, total?: number) => void>;
}

const cancelled = (digest: Digest, reason?: unknown): LxrError =>
  new LxrError('LXR_UNAVAILABLE', 'pull cancelled', { step: `ingest ${digest}`, ...(reason !== undefined ? { cause: reason } : {}) });

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** Rejects with `onAbort()` when the signal fires first; never leaks the listener. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort: () => unknown): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.reject(onAbort());
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(onAbort());
    signal.addEventListener('abort', abort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(e);
      },
    );
  });
}

/** A rename or unlink is durable only once its directory is synced. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoOf(e) === 'EPERM';
  }
}

export class BlobStore {
  readonly jsonLimit: number;
  private readonly inflight = new Map<Digest, Flight>();

  constructor(
    readonly root: string,
    opts: BlobStoreOptions = {},
  ) {
    this.jsonLimit = opts.jsonLimit ?? DEFAULT_JSON_LIMIT;
    checkSize(this.jsonLimit, 'jsonLimit');
  }

  private get ingestDir(): string {
    return path.join(this.root, 'ingest');
  }

  /** Where the blob lives (whether or not it is present). Validates the digest. */
  path(digest: Digest): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.root, 'blobs', algorithm, hex);
  }

  private async statBlob(digest: Digest): Promise<number | null> {
    try {
      const st = await stat(this.path(digest));
      return st.isFile() ? st.size : null;
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return null;
      throw e;
    }
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.statBlob(digest)) !== null;
  }

  /** The blob's size in bytes; NOT_FOUND when absent. */
  async size(digest: Digest): Promise<number> {
    const size = await this.statBlob(digest);
    if (size === null) throw notFound('blob', digest);
    return size;
  }

  /**
   * Stores the blob `digest` from `source`, verified against the digest and
   * (when given) `expectedSize`. Returns at once when it is already present.
   * Concurrent ingests of one digest in this process share one download:
   * only the first caller's source is used. On any failure or cancellation
   * the partial file is removed and nothing lands under blobs/.
   */
  async ingest(digest: Digest, expectedSize: number | undefined, source: BlobSource, opts: IngestOptions = {}): Promise<IngestResult> {
    parseDigest(digest);
    if (expectedSize !== undefined) checkSize(expectedSize);
    if (opts.signal?.aborted) throw cancelled(digest, opts.signal.reason);

    // Joining happens synchronously (no await before the map is consulted
    // and filled), so two callers in one tick can never both start a flight.
    let flight = this.inflight.get(digest);
    if (flight === undefined || flight.controller.signal.aborted) flight = this.startFlight(digest, expectedSize, source);

    flight.waiters++;
    if (opts.onProgress) flight.listeners.add(opts.onProgress);
    let result: IngestResult;
    try {
      result = await raceAbort(flight.promise, opts.signal, () => cancelled(digest, opts.signal?.reason));
    } finally {
      flight.waiters--;
      if (opts.onProgress) flight.listeners.delete(opts.onProgress);
      if (flight.waiters === 0 && !flight.settled) flight.controller.abort(opts.signal?.reason);
    }
    // A joiner may expect a different size than the caller whose size the
    // download was checked against; the content is right, the descriptor is not.
    if (expectedSize !== undefined && result.size !== expectedSize) {
      throw sizeMismatch(digest, expectedSize, String(result.size));
    }
    return { ...result };
  }

  private startFlight(digest: Digest, expectedSize: number | undefined, source: BlobSource): Flight {
    const flight: Flight = {
      promise: undefined as unknown as Promise<IngestResult>, // set below: fetch's progress callback needs `flight`
      controller: new AbortController(),
      waiters: 0,
      settled: false,
      listeners: new Set(),
    };
    const progress = (done: number): void => {
      for (const listener of flight.listeners) {
        try {
          listener(done, expectedSize);
        } catch {
          // A faulty progress callback must not fail a download others share.
        }
      }
    };
    flight.promise = this.fetch(digest, expectedSize, source, flight.controller.signal, progress).finally(() => {
      flight.settled = true;
      if (this.inflight.get(digest) === flight) this.inflight.delete(digest);
    });
    // Every waiter may have left (cancelled) before the flight settles.
    flight.promise.catch(() => {});
    this.inflight.set(digest, flight);
    return flight;
  }

  private async fetch(
    digest: Digest,
    expectedSize: number | undefined,
    source: BlobSource,
    signal: AbortSignal,
    progress: (done: number) => void,
  ): Promise<IngestResult> {
    const existing = await this.statBlob(digest);
    if (existing !== null) return { digest, size: existing, existed: true };

    const { algorithm, hex } = parseDigest(digest);
    await mkdir(this.ingestDir, { recursive: true, mode: 0o700 });
    const partial = path.join(this.ingestDir, `${algorithm}-${hex}.${process.pid}.${randomBytes(4).toString('hex')}.partial`);
    // 0444: a blob is immutable once stored; the open descriptor still writes.
    const fh: FileHandle = await open(partial, 'wx', 0o444);
    let closed = false;
    let sourceError: unknown;
    let fromSource = true;
    try {
      const opening = Promise.resolve().then(() => source(signal));
      const input = await raceAbort(opening, signal, () => {
        // The stream may still arrive after the cancel: nobody will read it.
        opening.then((r) => r.destroy(), () => {});
        return cancelled(digest, signal.reason);
      });
      fromSource = false;
      input.once('error', (e) => {
        sourceError ??= e;
      });
      if (signal.aborted) {
        input.destroy();
        throw cancelled(digest, signal.reason);
      }
      const verifier = new DigestVerifier(digest, { expectedSize, onBytes: progress });
      await pipeline(
        input,
        verifier,
        async function write(chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) await fh.write(chunk);
        },
        { signal },
      );
      await fh.sync();
      closed = true;
      await fh.close();

      const dir = path.dirname(this.path(digest));
      const created = await mkdir(dir, { recursive: true, mode: 0o755 });
      // New directories are durable only once their parents are synced.
      if (created !== undefined) {
        for (let d = dir; ; d = path.dirname(d)) {
          await fsyncDir(path.dirname(d));
          if (d === created || path.dirname(d) === d) break;
        }
      }
      await rename(partial, this.path(digest));
      await fsyncDir(dir);
      return { digest, size: verifier.size, existed: false };
    } catch (e) {
      const err = this.classify(e, digest, signal, fromSource || (sourceError !== undefined && e === sourceError));
      return failAfterCleanup(err, [
        async () => {
          if (!closed) await fh.close();
        },
        () => rm(partial, { force: true }),
      ]);
    }
  }

  /** Maps a failed ingest to the catalogue: cancelled, source failure, or local failure. */
  private classify(e: unknown, digest: Digest, signal: AbortSignal, fromSource: boolean): LxrError {
    if (signal.aborted) return e instanceof LxrError && e.message === 'pull cancelled' ? e : cancelled(digest, signal.reason);
    if (e instanceof LxrError) return e;
    const message = e instanceof Error ? e.message : String(e);
    const errno = errnoOf(e);
    const extra = { cause: e, ...(errno !== undefined ? { errno } : {}) };
    if (fromSource) return new LxrError('LXR_UNAVAILABLE', `fetching blob ${digest} failed: ${message}`, { step: `fetch ${digest}`, ...extra });
    const reason = errno === 'ENOSPC' || errno === 'EDQUOT' ? 'LXR_RESOURCE_EXHAUSTED' : 'LXR_INTERNAL';
    return new LxrError(reason, `storing blob ${digest} failed: ${message}`, { step: `store ${digest}`, ...extra });
  }

  /**
   * Removes the blob; false when it was not there (so a garbage collector
   * racing another is not an error). Callers coordinate with pulls: deleting
   * a blob an ingest just reported as existing is theirs to prevent.
   */
  async delete(digest: Digest): Promise<boolean> {
    const file = this.path(digest);
    try {
      await rm(file);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return false;
      throw e;
    }
    await fsyncDir(path.dirname(file));
    return true;
  }

  /** Every stored blob with its size, sorted by digest. Stray files are skipped. */
  async list(): Promise<BlobInfo[]> {
    const out: BlobInfo[] = [];
    for (const algorithm of ALGORITHMS) {
      const dir = path.join(this.root, 'blobs', algorithm);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (e) {
        if (errnoOf(e) === 'ENOENT') continue;
        throw e;
      }
      for (const name of names) {
        const digest = `${algorithm}:${name}`;
        try {
          parseDigest(digest);
        } catch {
          continue;
        }
        const size = await this.statBlob(digest);
        if (size !== null) out.push({ digest, size });
      }
    }
    return out.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  }

  /**
   * A stream of the blob's bytes; NOT_FOUND when absent. With `verify`, the
   * stream errors at its end if the file no longer matches its digest (the
   * cheap way to check a layer while unpacking it anyway).
   */
  async open(digest: Digest, opts: { verify?: boolean } = {}): Promise<Readable> {
    const fh = await this.openFile(digest);
    let size: number;
    try {
      size = (await fh.stat()).size;
    } catch (e) {
      return failAfterCleanup(e, [() => fh.close()]);
    }
    // The stream owns the descriptor from here: it closes it at end or destroy.
    const stream = fh.createReadStream();
    if (!opts.verify) return stream;
    const verifier = new DigestVerifier(digest, { expectedSize: size });
    pipelineCb(stream, verifier, () => {
      // Errors reach the reader through the verifier, which pipeline destroys.
    });
    return verifier;
  }

  private async openFile(digest: Digest): Promise<FileHandle> {
    try {
      return await open(this.path(digest), 'r');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') throw notFound('blob', digest);
      throw e;
    }
  }

  /**
   * Parses a small blob (manifest, config) as JSON, refusing blobs over
   * `limit` bytes before reading them, and re-checking the digest since the
   * bytes are in memory anyway.
   */
  async readJson<T>(digest: Digest, limit = this.jsonLimit): Promise<T> {
    const fh = await this.openFile(digest);
    let buf: Buffer;
    try {
      const { size } = await fh.stat();
      if (size > limit) throw invalidArgument('digest', `blob ${digest} is ${size} bytes, over the ${limit}-byte limit for JSON documents`);
      buf = await fh.readFile();
    } finally {
      await fh.close();
    }
    const actual = digestOf(buf, parseDigest(digest).algorithm);
    if (actual !== digest) throw corrupt(digest, actual);
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch (e) {
      throw invalidArgument('digest', `blob ${digest} is not valid JSON: ${(e as Error).message}`);
    }
  }

  /**
   * Re-hashes the stored file: detects corruption or tampering on disk.
   * Throws LXR_INTERNAL naming both digests; the caller may delete and re-pull.
   */
  async verify(digest: Digest): Promise<BlobInfo> {
    const fh = await this.openFile(digest);
    const verifier = new DigestVerifier(digest);
    try {
      await pipeline(fh.createReadStream(), verifier, async function drain(chunks: AsyncIterable<Buffer>) {
        for await (const _ of chunks);
      });
    } catch (e) {
      if (e instanceof LxrError && e.field === 'digest' && verifier.actual !== undefined) throw corrupt(digest, verifier.actual);
      throw e;
    }
    return { digest, size: verifier.size };
  }

  /**
   * Removes partial files left by processes that died mid-download (their
   * pid is in the name). Partials of live processes are left alone. Returns
   * how many were removed.
   */
  async removeStalePartials(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.ingestDir);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return 0;
      throw e;
    }
    let removed = 0;
    for (const name of names) {
      const m = PARTIAL_RE.exec(name);
      if (m === null) continue;
      const pid = Number(m[1]);
      if (pid === process.pid || pidAlive(pid)) continue;
      await rm(path.join(this.ingestDir, name), { force: true });
      removed++;
    }
    return removed;
  }
}

const corrupt = (digest: Digest, actual: Digest): LxrError =>
  new LxrError('LXR_INTERNAL', `blob ${digest} is corrupt on disk: its content hashes to ${actual}`, {
    field: 'digest',
    step: 'verify blob',
  });
