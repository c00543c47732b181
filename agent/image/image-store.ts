// The image store: one record per image (keyed by its manifest digest, the
// image's identity) and the name index mapping canonical references
// ("docker.io/library/golang:latest") to them. A name points at one image;
// giving it to another takes it away from the first, and an image left with
// no name is deleted, as `docker rmi` does when it removes the last tag.
//
// Layout:
//   <root>/<manifest hex>.json   ImageRecord
//   <root>/names.json            { "<reference>": "<manifest digest>" }
// Every file is written atomically and durably; mutations are serialised.

import { readFileSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { notFound } from '../../proto/shared/errors.js';
import { writeAtomic } from '../runtime/store.js';
import { type Digest, isDigest, parseDigest } from './digest.js';
import type { ChainId } from './layer-store.js';
import { parseReference, referenceString, withDefaultTag } from './reference.js';
import type { Platform } from './registry/platform.js';

export interface ImageRecord {
  /** Canonical references, sorted. */
  names: string[];
  manifestDigest: Digest;
  /** The index the image was chosen from, when pulled through one. */
  indexDigest?: Digest;
  configDigest: Digest;
  /** Lowest first. */
  layers: ChainId[];
  /** Compressed layer blobs, in the same order. */
  layerBlobs: Digest[];
  /** Their compressed sizes. */
  layerSizes: number[];
  platform: Platform;
  /** Sum of the compressed layer sizes. */
  size: number;
  created: string;
}

/** The canonical form of a user-given name: parsed, normalised, ":latest" added. */
export function canonicalName(name: string): string {
  return referenceString(withDefaultTag(parseReference(name)));
}

type NameIndex = Record<string, Digest>;

export class ImageStore {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly root: string) {}

  private recordPath(digest: Digest): string {
    return path.join(this.root, `${parseDigest(digest).hex}.json`);
  }

  private get namesPath(): string {
    return path.join(this.root, 'names.json');
  }

  /** Runs mutations one at a time, so two read-modify-writes never interleave. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  // The index and the records are small local files read on every container
  // create: read synchronously, as a thread-pool round trip costs more than
  // the read itself.
  private async readNames(): Promise<NameIndex> {
    try {
      return JSON.parse(readFileSync(this.namesPath, 'utf8')) as NameIndex;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw e;
    }
  }

  private async writeNames(names: NameIndex): Promise<void> {
    const sorted = Object.fromEntries(Object.entries(names).sort(([a], [b]) => (a < b ? -1 : 1)));
    await writeAtomic(this.namesPath, JSON.stringify(sorted, null, 2) + '\n', 0o644, true);
  }

  private async writeRecord(r: ImageRecord): Promise<void> {
    await writeAtomic(this.recordPath(r.manifestDigest), JSON.stringify(r, null, 2) + '\n', 0o644, true);
  }

  async get(digest: Digest): Promise<ImageRecord | undefined> {
    try {
      return JSON.parse(readFileSync(this.recordPath(digest), 'utf8')) as ImageRecord;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async list(): Promise<ImageRecord[]> {
    let files: string[];
    try {
      files = await readdir(this.root);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: ImageRecord[] = [];
    for (const f of files.sort()) {
      const m = /^([0-9a-f]{64})\.json$/.exec(f);
      if (m === null) continue;
      const r = await this.get(`sha256:${m[1]}`);
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  /**
   * Finds an image by name, manifest digest ("sha256:..."), or bare hex id.
   * NOT_FOUND when nothing matches.
   */
  async resolve(nameOrDigest: string): Promise<ImageRecord> {
    let digest: Digest | undefined;
    if (isDigest(nameOrDigest)) digest = nameOrDigest;
    else if (/^[0-9a-f]{64}$/.test(nameOrDigest)) digest = `sha256:${nameOrDigest}`;
    else digest = (await this.readNames())[canonicalName(nameOrDigest)];
    const r = digest === undefined ? undefined : await this.get(digest);
    if (r === undefined) throw notFound('image', nameOrDigest);
    return r;
  }

  /**
   * Stores the image (merging names with an existing record of the same
   * digest) and points each of `names` at it, taking them from other images;
   * images left nameless are deleted and returned.
   */
  put(record: Omit<ImageRecord, 'names'>, names: readonly string[]): Promise<{ record: ImageRecord; dropped: ImageRecord[] }> {
    const canon = names.map(canonicalName);
    return this.serial(async () => {
      await mkdir(this.root, { recursive: true, mode: 0o755 });
      const index = await this.readNames();
      const existing = await this.get(record.manifestDigest);
      const all = new Set([...(existing?.names ?? []), ...canon]);
      const stored: ImageRecord = { ...(existing ?? record), names: [...all].sort() };
      const losers = new Map<Digest, string[]>();
      for (const n of canon) {
        const prev = index[n];
        if (prev !== undefined && prev !== record.manifestDigest) losers.set(prev, [...(losers.get(prev) ?? []), n]);
        index[n] = record.manifestDigest;
      }
      // Record first, then the index: a crash between them leaves a record
      // whose names the index does not point at yet, never a dangling name.
      await this.writeRecord(stored);
      const dropped: ImageRecord[] = [];
      for (const [digest, lost] of losers) {
        const other = await this.get(digest);
        if (other === undefined) continue;
        other.names = other.names.filter((n) => !lost.includes(n));
        if (other.names.length === 0) dropped.push(other);
        else await this.writeRecord(other);
      }
      await this.writeNames(index);
      for (const d of dropped) await rm(this.recordPath(d.manifestDigest), { force: true });
      return { record: stored, dropped };
    });
  }

  /**
   * Removes a name. A digest (or id) removes the image with all its names.
   * Returns the image and whether its record was deleted (no name left).
   */
  untag(nameOrDigest: string): Promise<{ record: ImageRecord; deleted: boolean }> {
    return this.serial(async () => {
      const index = await this.readNames();
      const byDigest = isDigest(nameOrDigest) || /^[0-9a-f]{64}$/.test(nameOrDigest);
      const record = await this.resolve(nameOrDigest);
      const drop = byDigest ? record.names : [canonicalName(nameOrDigest)];
      for (const n of drop) if (index[n] === record.manifestDigest) delete index[n];
      record.names = record.names.filter((n) => !drop.includes(n));
      const deleted = record.names.length === 0;
      if (deleted) {
        // Index first: a crash after it leaves an unnamed record, which gc-by-name ignores.
        await this.writeNames(index);
        await rm(this.recordPath(record.manifestDigest), { force: true });
      } else {
        await this.writeRecord(record);
        await this.writeNames(index);
      }
      return { record, deleted };
    });
  }

  /** The name index (canonical reference -> manifest digest). */
  async names(): Promise<NameIndex> {
    return this.readNames();
  }
}
