// The image service: pulls (registry -> verified blobs -> unpacked layers ->
// image record), imports, listing, inspection, untagging and garbage
// collection. A plain class: the gRPC adapter maps its LxrErrors to status.
//
// Garbage collection must never delete what a pull in progress has just
// fetched but not yet recorded, so pulls and imports hold a shared lock and
// gc an exclusive one.

import path from 'node:path';
import { LxrError, notFound } from '../../proto/shared/errors.js';
import { BlobStore } from './blob-store.js';
import type { Digest } from './digest.js';
import { type ImageRecord, ImageStore } from './image-store.js';
import { importArchive, type ImportOptions } from './import.js';
import { type ChainId, chainIds, type LayerRecord, LayerStore } from './layer-store.js';
import { parseReference, referenceString, withDefaultTag } from './reference.js';
import type { RegistryClient } from './registry/client.js';
import type { Descriptor, ImageConfig } from './registry/manifest.js';
import type { Platform } from './registry/platform.js';
import type { FsOps, UnpackLimits } from './unpack.js';

/**
 * A layer's progress: queued; bytes arriving (the store hashes them in
 * flight); download complete and its digest checked; unpacking (the diffID is
 * checked as it goes); unpacked; or already present, so nothing was fetched.
 */
export type PullState = 'waiting' | 'downloading' | 'verifying' | 'extracting' | 'done' | 'exists';

export interface PullProgress {
  /** The layer's (compressed) blob digest. */
  layer: Digest;
  state: PullState;
  current: number;
  total: number;
}

export interface PullOptions {
  platform?: Platform;
  signal?: AbortSignal;
  onProgress?(ev: PullProgress): void;
}

export interface ImageServiceOptions {
  /** The image state root: blobs/, layers/, images/ go inside. */
  root: string;
  registry: RegistryClient;
  /** Layers downloaded (and unpacked) at once per pull. Default 3. */
  concurrency?: number;
  limits?: UnpackLimits;
  fsops?: FsOps;
}

export interface ImageConfigSummary {
  Entrypoint: string[] | null;
  Cmd: string[] | null;
  Env: string[];
  WorkingDir: string;
  User: string;
  ExposedPorts: Record<string, object>;
  Labels: Record<string, string>;
}

export interface ImageLayerInfo {
  chainId: ChainId;
  diffId: Digest;
  blob: Digest;
  /** Compressed size. */
  size: number;
  /** Uncompressed tar size. */
  unpackedSize: number;
}

export interface ImageInspect {
  id: Digest;
  names: string[];
  manifestDigest: Digest;
  indexDigest?: Digest;
  configDigest: Digest;
  platform: Platform;
  created: string;
  config: ImageConfigSummary;
  layers: ImageLayerInfo[];
  /** Compressed bytes of all layers. */
  size: number;
}

export interface RemoveResult {
  untagged: string[];
  /** Set when the image record was deleted (its last name went). */
  deleted?: Digest;
}

export interface GcResult {
  blobs: Digest[];
  layers: ChainId[];
}

/** What an importer hands over once the blobs are in the store. */
export interface CommitInput {
  names: string[];
  manifestDigest: Digest;
  indexDigest?: Digest;
  configDigest: Digest;
  config: ImageConfig;
  layers: Descriptor[];
  platform: Platform;
  signal?: AbortSignal | undefined;
}

const pullCancelled = (cause?: unknown): LxrError => new LxrError('LXR_UNAVAILABLE', 'pull cancelled', cause !== undefined ? { cause } : {});

/** Many shared holders (pulls, imports) or one exclusive holder (gc). */
class RwLock {
  private readers = 0;
  private writing: Promise<void> | undefined;
  private onDrained: (() => void) | undefined;

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writing !== undefined) await this.writing;
    this.readers++;
    try {
      return await fn();
    } finally {
      if (--this.readers === 0) this.onDrained?.();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writing !== undefined) await this.writing;
    let release!: () => void;
    this.writing = new Promise<void>((r) => (release = r));
    try {
      if (this.readers > 0) await new Promise<void>((r) => (this.onDrained = r));
      this.onDrained = undefined;
      return await fn();
    } finally {
      this.writing = undefined;
      release();
    }
  }
}

/** Pure: checks the config matches the manifest and returns the layer ChainIDs. */
export function planLayers(config: ImageConfig, layers: readonly Descriptor[], what: string): ChainId[] {
  const diffIds = config?.rootfs?.diff_ids;
  if (!Array.isArray(diffIds)) throw new LxrError('LXR_INVALID_ARGUMENT', `${what}: the image config has no rootfs.diff_ids`, { field: 'config' });
  if (diffIds.length !== layers.length) {
    throw new LxrError('LXR_INVALID_ARGUMENT', `${what}: the manifest lists ${layers.length} layers but the config ${diffIds.length} diff_ids`, { field: 'config' });
  }
  if (layers.length === 0) throw new LxrError('LXR_INVALID_ARGUMENT', `${what}: the image has no layers`, { field: 'manifest' });
  return chainIds(diffIds);
}

/** Runs fn over items, at most `limit` at a time; stops starting new ones after the first failure. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>, onFail: (e: unknown) => void): Promise<unknown[]> {
  let next = 0;
  let failed = false;
  const errors: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (e) {
        errors.push(e);
        if (!failed) {
          failed = true;
          onFail(e);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return errors;
}

/** An image config is small JSON; a layer count past this is no real image (overlayfs stacks at most 500). */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
const MAX_LAYERS = 128;

const CONFIG_CACHE = 256;

export class ImageService {
  readonly blobs: BlobStore;
  readonly layers: LayerStore;
  readonly images: ImageStore;
  private readonly registry: RegistryClient;
  private readonly concurrency: number;
  private readonly lock = new RwLock();
  /**
   * Verified image configs by digest: content-addressed, so never stale.
   * Every container create inspects its image; this spares it reading and
   * hashing the blob each time. At most CONFIG_CACHE entries (oldest out).
   */
  private readonly configs = new Map<Digest, ImageConfig['config']>();

  constructor(opts: ImageServiceOptions) {
    this.blobs = new BlobStore(opts.root);
    this.layers = new LayerStore(path.join(opts.root, 'layers'), { ...(opts.limits ? { limits: opts.limits } : {}), ...(opts.fsops ? { fsops: opts.fsops } : {}) });
    this.images = new ImageStore(path.join(opts.root, 'images'));
    this.registry = opts.registry;
    this.concurrency = Math.max(1, opts.concurrency ?? 3);
  }

  /**
   * Pulls an image: resolves the reference (choosing the platform from an
   * index), fetches the config and the layers (verified, `concurrency` at a
   * time), unpacks the layers (checking the config's diffIDs) and records
   * the image under the reference's canonical name. Cancelling through
   * `signal` rejects with LXR_UNAVAILABLE 'pull cancelled' once nothing
   * partial is left.
   */
  async pull(ref: string, opts: PullOptions = {}): Promise<ImageInspect> {
    const r = withDefaultTag(parseReference(ref));
    const name = referenceString(r);
    const user = opts.signal;
    if (user?.aborted) throw pullCancelled(user.reason);
    // One controller for the whole pull: the caller's cancel and a failed
    // layer both stop the other layers.
    const ac = new AbortController();
    const onUserAbort = (): void => ac.abort(user?.reason);
    user?.addEventListener('abort', onUserAbort, { once: true });
    const signal = ac.signal;
    const emit = (ev: PullProgress): void => {
      try {
        opts.onProgress?.(ev);
      } catch {
        // A faulty listener must not fail the pull.
      }
    };
    try {
      const record = await this.lock.shared(async () => {
        const resolved = await this.registry.resolve(r, { signal, store: this.blobs, ...(opts.platform ? { platform: opts.platform } : {}) });
        // The manifest is the registry's word: bound what it may make us fetch.
        if (resolved.config.size > MAX_CONFIG_BYTES) {
          throw new LxrError('LXR_INVALID_ARGUMENT', `image ${name}: its config is ${resolved.config.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`, { field: 'image' });
        }
        if (resolved.layers.length > MAX_LAYERS) {
          throw new LxrError('LXR_INVALID_ARGUMENT', `image ${name}: ${resolved.layers.length} layers, over the ${MAX_LAYERS}-layer limit`, { field: 'image' });
        }
        await this.registry.fetchBlob(r, resolved.config.digest, resolved.config.size, this.blobs, { signal });
        const config = await this.blobs.readJson<ImageConfig>(resolved.config.digest);
        const chains = planLayers(config, resolved.layers, `image ${name}`);
        for (const l of resolved.layers) emit({ layer: l.digest, state: 'waiting', current: 0, total: l.size });
        const errors = await pool(
          resolved.layers,
          this.concurrency,
          async (desc, i) => {
            const chainId = chains[i]!;
            const haveLayer = await this.layers.has(chainId);
            if (haveLayer && (await this.blobs.has(desc.digest))) {
              emit({ layer: desc.digest, state: 'exists', current: desc.size, total: desc.size });
              return;
            }
            let last = 0;
            emit({ layer: desc.digest, state: 'downloading', current: 0, total: desc.size });
            await this.registry.fetchBlob(r, desc.digest, desc.size, this.blobs, {
              signal,
              onProgress: (done) => {
                const now = Date.now();
                if (done >= desc.size || now - last >= 100) {
                  last = now;
                  emit({ layer: desc.digest, state: 'downloading', current: done, total: desc.size });
                }
              },
            });
            emit({ layer: desc.digest, state: 'verifying', current: desc.size, total: desc.size });
            if (!haveLayer) {
              emit({ layer: desc.digest, state: 'extracting', current: 0, total: desc.size });
              await this.ensureLayer(desc, config.rootfs.diff_ids[i]!, chainId, i === 0 ? null : chains[i - 1]!, signal);
            }
            emit({ layer: desc.digest, state: 'done', current: desc.size, total: desc.size });
          },
          () => ac.abort(),
        );
        if (user?.aborted) throw pullCancelled(user.reason);
        if (errors.length > 0) throw errors.find((e) => !(e instanceof LxrError && e.message === 'pull cancelled')) ?? errors[0];
        if (signal.aborted) throw pullCancelled(signal.reason);
        return this.record({
          names: [name],
          manifestDigest: resolved.manifestDigest,
          ...(resolved.index ? { indexDigest: resolved.index.digest } : {}),
          configDigest: resolved.config.digest,
          config,
          layers: resolved.layers,
          platform: resolved.platform,
        }, chains);
      });
      return this.inspectRecord(record);
    } catch (e) {
      if (user?.aborted) throw e instanceof LxrError && e.message === 'pull cancelled' ? e : pullCancelled(user.reason);
      throw e;
    } finally {
      user?.removeEventListener('abort', onUserAbort);
    }
  }

  private async ensureLayer(desc: Descriptor, diffId: Digest, chainId: ChainId, parent: ChainId | null, signal?: AbortSignal): Promise<LayerRecord> {
    const { record } = await this.layers.ensure({
      chainId,
      parent,
      diffId,
      blob: desc.digest,
      mediaType: desc.mediaType,
      open: () => this.blobs.open(desc.digest),
      signal,
    });
    return record;
  }

  private async record(c: CommitInput, chains: ChainId[]): Promise<ImageRecord> {
    const { record } = await this.images.put(
      {
        manifestDigest: c.manifestDigest,
        ...(c.indexDigest !== undefined ? { indexDigest: c.indexDigest } : {}),
        configDigest: c.configDigest,
        layers: chains,
        layerBlobs: c.layers.map((l) => l.digest),
        layerSizes: c.layers.map((l) => l.size),
        platform: c.platform,
        size: c.layers.reduce((s, l) => s + l.size, 0),
        created: typeof c.config.created === 'string' ? c.config.created : new Date().toISOString(),
      },
      c.names,
    );
    return record;
  }

  /**
   * Unpacks the layers of an image whose blobs are already in the store and
   * records it (importers use this). Runs under the pull lock.
   */
  private async commitLocked(c: CommitInput): Promise<ImageRecord> {
    const chains = planLayers(c.config, c.layers, `image ${c.manifestDigest}`);
    for (const [i, desc] of c.layers.entries()) {
      if (!(await this.blobs.has(desc.digest))) throw notFound('blob', desc.digest);
      await this.ensureLayer(desc, c.config.rootfs.diff_ids[i]!, chains[i]!, i === 0 ? null : chains[i - 1]!, c.signal);
    }
    return this.record(c, chains);
  }

  /** Imports an OCI image layout (dir or tar) or a `docker save` archive; returns the images recorded. */
  async import(source: string, opts: ImportOptions = {}): Promise<ImageInspect[]> {
    const records = await this.lock.shared(() => importArchive(source, { blobs: this.blobs, commit: (c) => this.commitLocked(c) }, opts));
    return Promise.all(records.map((r) => this.inspectRecord(r)));
  }

  async list(): Promise<ImageRecord[]> {
    return this.images.list();
  }

  async inspect(nameOrDigest: string): Promise<ImageInspect> {
    return this.inspectRecord(await this.images.resolve(nameOrDigest));
  }

  private async inspectRecord(r: ImageRecord): Promise<ImageInspect> {
    let cached = this.configs.get(r.configDigest);
    if (cached === undefined) {
      cached = (await this.blobs.readJson<ImageConfig>(r.configDigest)).config ?? {};
      if (this.configs.size >= CONFIG_CACHE) this.configs.delete(this.configs.keys().next().value!);
      this.configs.set(r.configDigest, cached);
    }
    const cfg = structuredClone(cached); // callers may change what they get
    const layers: ImageLayerInfo[] = [];
    for (const [i, chainId] of r.layers.entries()) {
      const l = await this.layers.get(chainId);
      layers.push({ chainId, diffId: l?.diffId ?? '', blob: r.layerBlobs[i]!, size: r.layerSizes[i] ?? 0, unpackedSize: l?.size ?? 0 });
    }
    return {
      id: r.manifestDigest,
      names: r.names,
      manifestDigest: r.manifestDigest,
      ...(r.indexDigest !== undefined ? { indexDigest: r.indexDigest } : {}),
      configDigest: r.configDigest,
      platform: r.platform,
      created: r.created,
      config: {
        Entrypoint: cfg.Entrypoint ?? null,
        Cmd: cfg.Cmd ?? null,
        Env: cfg.Env ?? [],
        WorkingDir: cfg.WorkingDir ?? '',
        User: cfg.User ?? '',
        ExposedPorts: cfg.ExposedPorts ?? {},
        Labels: cfg.Labels ?? {},
      },
      layers,
      size: r.size,
    };
  }

  /**
   * Removes a name (a digest removes every name of its image). The record
   * goes with the last name; blobs and layers stay until gc. NOT_FOUND for
   * an unknown name.
   */
  async remove(nameOrDigest: string): Promise<RemoveResult> {
    const before = await this.images.resolve(nameOrDigest);
    const { record, deleted } = await this.images.untag(nameOrDigest);
    const untagged = before.names.filter((n) => !record.names.includes(n));
    return { untagged, ...(deleted ? { deleted: record.manifestDigest } : {}) };
  }

  /** The image's layer dirs, lowest first (planOverlay's order). */
  async rootfsLayers(nameOrDigest: string): Promise<string[]> {
    const r = await this.images.resolve(nameOrDigest);
    return this.layers.fsPaths(r.layers);
  }

  /**
   * rootfsLayers of an image just inspected, from what inspect read (a
   * layer whose record it did not find has no diffId): nothing read twice
   * on the create path.
   */
  rootfsLayersOf(img: ImageInspect): string[] {
    return img.layers.map((l) => {
      if (l.diffId === '') throw notFound('layer', l.chainId);
      return this.layers.fsPath(l.chainId);
    });
  }

  /**
   * Deletes blobs and layers no image references and no container uses
   * (`inUse`: chainIDs of running containers' layers; their parents are kept
   * too). Waits for pulls in progress and blocks new ones while it runs.
   */
  async gc(inUse: ReadonlySet<ChainId> = new Set()): Promise<GcResult> {
    return this.lock.exclusive(async () => {
      const keepBlobs = new Set<Digest>();
      const keepLayers = new Set<ChainId>();
      for (const img of await this.images.list()) {
        keepBlobs.add(img.manifestDigest).add(img.configDigest);
        if (img.indexDigest !== undefined) keepBlobs.add(img.indexDigest);
        for (const b of img.layerBlobs) keepBlobs.add(b);
        for (const c of img.layers) keepLayers.add(c);
      }
      const layers = new Map((await this.layers.list()).map((l) => [l.chainId, l]));
      for (const top of inUse) {
        // A container's stack needs every layer below its top one.
        let c: ChainId | null = top;
        while (c !== null && !keepLayers.has(c)) {
          keepLayers.add(c);
          c = layers.get(c)?.parent ?? null;
        }
      }
      for (const c of keepLayers) {
        const l = layers.get(c);
        if (l !== undefined) keepBlobs.add(l.blob);
      }
      const removed: GcResult = { blobs: [], layers: [] };
      for (const c of layers.keys()) {
        if (!keepLayers.has(c) && (await this.layers.delete(c))) removed.layers.push(c);
      }
      for (const b of await this.blobs.list()) {
        if (!keepBlobs.has(b.digest) && (await this.blobs.delete(b.digest))) removed.blobs.push(b.digest);
      }
      await this.layers.removeStaging();
      await this.blobs.removeStalePartials();
      return removed;
    });
  }
}
