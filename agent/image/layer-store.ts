// The layer store: every image layer unpacked once, keyed by its OCI ChainID
// (the identity of a layer *stack*, not of one tar), so images sharing a base
// share its directories and overlay lowerdirs never need copying.
//
// Layout:
//   <root>/<chainID hex>/fs           the unpacked layer (an overlay lowerdir)
//   <root>/<chainID hex>/layer.json   LayerRecord
//   <root>/.staging-<hex>-<rand>/     an unpack in progress
//
// A layer appears by renaming a complete staging dir (fs plus record) into
// place, so <root>/<hex> is always whole; leftovers of a crash are only ever
// staging dirs, which removeStaging() deletes.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { failAfterCleanup, LxrError, notFound } from '../../proto/shared/errors.js';
import { writeAtomic } from '../runtime/store.js';
import { type Digest, parseDigest, sha256Hex } from './digest.js';
import { type FsOps, unpackLayer, type UnpackLimits } from './unpack.js';

export type ChainId = Digest;

export interface LayerRecord {
  chainId: ChainId;
  diffId: Digest;
  /** Uncompressed tar bytes. */
  size: number;
  entries: number;
  /** ChainID of the layer below; null for a base layer. */
  parent: ChainId | null;
  /** The compressed blob this was unpacked from. */
  blob: Digest;
  mediaType: string;
  created: string;
}

/** Pure: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)). */
export function chainIds(diffIds: readonly Digest[]): ChainId[] {
  const out: ChainId[] = [];
  for (const [i, diffId] of diffIds.entries()) {
    parseDigest(diffId, `rootfs.diff_ids[${i}]`);
    const prev = out[i - 1];
    out.push(prev === undefined ? diffId : `sha256:${sha256Hex(`${prev} ${diffId}`)}`);
  }
  return out;
}

export const DEFAULT_UNPACK_LIMITS: UnpackLimits = { maxBytes: 64 * 1024 ** 3, maxEntries: 2_000_000 };

export interface EnsureLayer {
  chainId: ChainId;
  parent: ChainId | null;
  diffId: Digest;
  blob: Digest;
  mediaType: string;
  /** Opens the (verified) compressed blob; called only when the layer is missing. */
  open(): Promise<Readable>;
  signal?: AbortSignal | undefined;
}

interface Flight {
  promise: Promise<LayerRecord>;
  controller: AbortController;
  waiters: number;
  settled: boolean;
}

const cancelled = (chainId: ChainId, cause?: unknown): LxrError =>
  new LxrError('LXR_UNAVAILABLE', 'pull cancelled', { step: `unpack ${chainId}`, ...(cause !== undefined ? { cause } : {}) });

const isENOENT = (e: unknown): boolean => (e as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

export class LayerStore {
  private readonly inflight = new Map<ChainId, Flight>();

  constructor(
    readonly root: string,
    private readonly opts: { limits?: UnpackLimits; fsops?: FsOps } = {},
  ) {}

  dir(chainId: ChainId): string {
    const { algorithm, hex } = parseDigest(chainId, 'chainId');
    if (algorithm !== 'sha256') throw new LxrError('LXR_INVALID_ARGUMENT', `chainID ${chainId} is not sha256`, { field: 'chainId' });
    return path.join(this.root, hex);
  }

  /** The overlay lowerdir of a layer. */
  fsPath(chainId: ChainId): string {
    return path.join(this.dir(chainId), 'fs');
  }

  /** Read synchronously: a small local file, read for every layer at every container create. */
  async get(chainId: ChainId): Promise<LayerRecord | undefined> {
    try {
      return JSON.parse(readFileSync(path.join(this.dir(chainId), 'layer.json'), 'utf8')) as LayerRecord;
    } catch (e) {
      if (isENOENT(e)) return undefined;
      throw e;
    }
  }

  async has(chainId: ChainId): Promise<boolean> {
    return (await this.get(chainId)) !== undefined;
  }

  async list(): Promise<LayerRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (e) {
      if (isENOENT(e)) return [];
      throw e;
    }
    const out: LayerRecord[] = [];
    for (const n of names.sort()) {
      if (!/^[0-9a-f]{64}$/.test(n)) continue;
      const r = await this.get(`sha256:${n}`);
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  /**
   * Makes sure the layer is unpacked; returns its record and whether it was
   * already there. Concurrent calls for one chainID share one unpack; a
   * caller's signal cancels only its wait, and the unpack itself stops (and
   * is cleaned up before the last caller's rejection) once nobody waits.
   */
  async ensure(req: EnsureLayer): Promise<{ record: LayerRecord; existed: boolean }> {
    const existing = await this.get(req.chainId);
    if (existing !== undefined) return { record: existing, existed: true };
    if (req.signal?.aborted) throw cancelled(req.chainId, req.signal.reason);
    let flight = this.inflight.get(req.chainId);
    if (flight === undefined || flight.controller.signal.aborted) flight = this.start(req);
    const f = flight;
    f.waiters++;
    let onAbort: (() => void) | undefined;
    try {
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => {
          f.waiters--;
          onAbort = undefined;
          if (f.waiters === 0 && !f.settled) {
            f.controller.abort(req.signal?.reason);
            // The last waiter leaves only after the staging dir is gone.
            f.promise.then(
              () => reject(cancelled(req.chainId, req.signal?.reason)),
              () => reject(cancelled(req.chainId, req.signal?.reason)),
            );
          } else reject(cancelled(req.chainId, req.signal?.reason));
        };
        req.signal?.addEventListener('abort', onAbort, { once: true });
      });
      aborted.catch(() => {});
      const record = await Promise.race([f.promise, aborted]);
      return { record, existed: false };
    } finally {
      if (onAbort !== undefined) {
        req.signal?.removeEventListener('abort', onAbort);
        f.waiters--;
      }
    }
  }

  private start(req: EnsureLayer): Flight {
    const flight: Flight = { promise: undefined as unknown as Promise<LayerRecord>, controller: new AbortController(), waiters: 0, settled: false };
    flight.promise = this.unpack(req, flight.controller.signal).finally(() => {
      flight.settled = true;
      if (this.inflight.get(req.chainId) === flight) this.inflight.delete(req.chainId);
    });
    flight.promise.catch(() => {});
    this.inflight.set(req.chainId, flight);
    return flight;
  }

  private async unpack(req: EnsureLayer, signal: AbortSignal): Promise<LayerRecord> {
    const final = this.dir(req.chainId);
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const staging = path.join(this.root, `.staging-${path.basename(final)}-${randomBytes(4).toString('hex')}`);
    await mkdir(staging, { mode: 0o755 });
    try {
      const source = await req.open();
      // Destroyed on cancel possibly after unpackLayer stopped listening (its
      // pipeline done, fsops still running): the error must not go uncaught.
      source.on('error', () => {});
      const onAbort = (): void => {
        source.destroy(cancelled(req.chainId, signal.reason));
      };
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      let res;
      try {
        res = await unpackLayer(
          { source, mediaType: req.mediaType, dest: path.join(staging, 'fs'), expectedDiffId: req.diffId, limits: this.opts.limits ?? DEFAULT_UNPACK_LIMITS },
          this.opts.fsops !== undefined ? { fsops: this.opts.fsops } : {},
        );
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
      if (signal.aborted) throw cancelled(req.chainId, signal.reason);
      const record: LayerRecord = {
        chainId: req.chainId,
        diffId: res.diffId,
        size: res.size,
        entries: res.entries,
        parent: req.parent,
        blob: req.blob,
        mediaType: req.mediaType,
        created: new Date().toISOString(),
      };
      await writeAtomic(path.join(staging, 'layer.json'), JSON.stringify(record, null, 2) + '\n', 0o644, true);
      try {
        await rename(staging, final);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Another process unpacked the same layer first: identical content.
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
        await rm(staging, { recursive: true, force: true });
        const other = await this.get(req.chainId);
        if (other === undefined) throw e;
        return other;
      }
      return record;
    } catch (e) {
      const err = signal.aborted ? cancelled(req.chainId, signal.reason) : e;
      return failAfterCleanup(err, [() => rm(staging, { recursive: true, force: true })]);
    }
  }

  /** Removes a layer; false when absent. Renamed away first so it vanishes atomically. */
  async delete(chainId: ChainId): Promise<boolean> {
    const dir = this.dir(chainId);
    const trash = path.join(this.root, `.staging-${path.basename(dir)}-${randomBytes(4).toString('hex')}-deleted`);
    try {
      await rename(dir, trash);
    } catch (e) {
      if (isENOENT(e)) return false;
      throw e;
    }
    await rm(trash, { recursive: true, force: true });
    return true;
  }

  /** Removes staging dirs no unpack of this process is using (crash leftovers). */
  async removeStaging(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (e) {
      if (isENOENT(e)) return 0;
      throw e;
    }
    let n = 0;
    for (const name of names) {
      const m = /^\.staging-([0-9a-f]{64})-/.exec(name);
      if (m === null || this.inflight.has(`sha256:${m[1]}`)) continue;
      await rm(path.join(this.root, name), { recursive: true, force: true });
      n++;
    }
    return n;
  }

  /** Throws NOT_FOUND unless every layer is present; returns fs dirs in the given order. */
  async fsPaths(chainIds: readonly ChainId[]): Promise<string[]> {
    const out: string[] = [];
    for (const c of chainIds) {
      if (!(await this.has(c))) throw notFound('layer', c);
      out.push(this.fsPath(c));
    }
    return out;
  }
}
