// Image import from files: an OCI image layout (a directory with oci-layout,
// index.json and blobs/, or a tar of one) and a `docker save` archive
// (manifest.json, config JSON, layer tars). Every blob goes through the
// BlobStore, so it is verified against its digest exactly as a pull is; a
// docker save archive has no manifest, so one (Docker schema 2) is made.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { x as extractTar } from 'tar';
import { failAfterCleanup, invalidArgument, LxrError } from '../../proto/shared/errors.js';
import type { BlobStore } from './blob-store.js';
import { type Digest, digestOf, parseDigest } from './digest.js';
import type { ImageRecord } from './image-store.js';
import { parseReference, referenceString, withDefaultTag } from './reference.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from './registry/manifest.js';
import { manifestKind, MediaType } from './registry/mediatypes.js';
import { hostPlatform, type Platform, selectPlatform } from './registry/platform.js';
import type { CommitInput } from './service.js';

export interface ImportOptions {
  signal?: AbortSignal;
  /** Platform chosen from nested indexes. Default: the host's. */
  platform?: Platform;
  /** Repository for OCI ref names that are bare tags ("latest"); without it such names are skipped. */
  repository?: string;
  /** Where a tar is extracted. Default: os.tmpdir(). */
  tmpDir?: string;
  /** Bounds on what a tar may unpack into tmpDir (a hostile or compressed archive). */
  limits?: { maxBytes?: number; maxEntries?: number };
}

const DEFAULT_IMPORT_LIMITS = { maxBytes: 64 * 1024 ** 3, maxEntries: 100_000 };

export interface ImportTarget {
  blobs: BlobStore;
  commit(c: CommitInput): Promise<ImageRecord>;
}

const JSON_LIMIT = 4 * 1024 * 1024;
export const OCI_REF_NAME = 'org.opencontainers.image.ref.name';
export const CONTAINERD_NAME = 'io.containerd.image.name';

const bad = (problem: string): LxrError => invalidArgument('source', problem);

/** Pure: `rel` joined under `dir`, refusing anything that would leave it. */
export function inside(dir: string, rel: string): string {
  if (typeof rel !== 'string' || rel === '' || path.isAbsolute(rel)) throw bad(`archive path ${JSON.stringify(rel)} is not a relative path`);
  const p = path.resolve(dir, rel);
  if (!p.startsWith(path.resolve(dir) + path.sep)) throw bad(`archive path ${JSON.stringify(rel)} leaves the archive`);
  return p;
}

/**
 * The file a (hostile) archive names, checked on disk: its real path must
 * stay inside the archive and be a regular file. `inside` only checks the
 * text; a symlink in the archive could otherwise import any host file.
 */
async function realInside(dir: string, file: string): Promise<string> {
  const [root, real] = await Promise.all([realpath(dir), realpath(file).catch(() => null)]);
  if (real === null) throw bad(`${path.relative(dir, file)} is missing from the archive`);
  if (!real.startsWith(root + path.sep)) throw bad(`${path.relative(dir, file)} leads outside the archive`);
  if (!(await stat(real)).isFile()) throw bad(`${path.relative(dir, file)} is not a regular file`);
  return real;
}

async function readJsonFile<T>(file: string, what: string): Promise<T> {
  let st;
  try {
    st = await stat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw bad(`${what} is missing`);
    throw e;
  }
  if (st.size > JSON_LIMIT) throw bad(`${what} is ${st.size} bytes, over the ${JSON_LIMIT}-byte limit`);
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (e) {
    // Not the parser's message: it quotes the content.
    throw bad(`${what} is not valid JSON`);
  }
}

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/**
 * Pure: the canonical names an OCI index entry carries: containerd's full
 * name annotation, else the OCI ref name (a full reference, or a bare tag
 * joined to `repository`).
 */
export function ociNames(annotations: Record<string, string> | undefined, repository?: string): string[] {
  const full = annotations?.[CONTAINERD_NAME];
  if (full !== undefined) return [referenceString(withDefaultTag(parseReference(full)))];
  const ref = annotations?.[OCI_REF_NAME];
  if (ref === undefined) return [];
  if (!ref.includes('/') && !ref.includes(':') && !ref.includes('@')) {
    if (repository === undefined) return [];
    return [referenceString(withDefaultTag(parseReference(`${repository}:${ref}`)))];
  }
  return [referenceString(withDefaultTag(parseReference(ref)))];
}

/** Imports every image of the archive or layout at `source`. */
export async function importArchive(source: string, target: ImportTarget, opts: ImportOptions = {}): Promise<ImageRecord[]> {
  let st;
  try {
    st = await stat(source);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw invalidArgument('source', `${JSON.stringify(source)} does not exist`);
    throw e;
  }
  if (st.isDirectory()) return importDir(source, target, opts);
  if (!st.isFile()) throw bad(`${JSON.stringify(source)} is neither a directory nor a tar file`);
  const tmp = await mkdtemp(path.join(opts.tmpDir ?? tmpdir(), 'lxr-import-'));
  try {
    // Only files and directories: no links, devices or absolute/.. paths
    // (node-tar's defaults refuse those), so nothing lands outside tmp; and
    // no more than the limits, counted from the headers before any write.
    const limits = { ...DEFAULT_IMPORT_LIMITS, ...opts.limits };
    let bytes = 0;
    let entries = 0;
    let over: LxrError | null = null;
    await extractTar({
      file: source,
      cwd: tmp,
      strict: true,
      preservePaths: false,
      preserveOwner: false,
      filter: (_p, entry) => {
        const e = entry as { type?: string; size?: number };
        bytes += e.size ?? 0;
        entries++;
        if (!over && bytes > limits.maxBytes) over = new LxrError('LXR_RESOURCE_EXHAUSTED', `archive ${JSON.stringify(source)} unpacks to more than limits.maxBytes (${limits.maxBytes} bytes)`, { field: 'limits.maxBytes' });
        if (!over && entries > limits.maxEntries) over = new LxrError('LXR_RESOURCE_EXHAUSTED', `archive ${JSON.stringify(source)} has more than limits.maxEntries (${limits.maxEntries}) entries`, { field: 'limits.maxEntries' });
        if (over) return false;
        const t = e.type;
        return t === 'File' || t === 'OldFile' || t === 'ContiguousFile' || t === 'Directory';
      },
    });
    if (over) throw over;
    const out = await importDir(tmp, target, opts);
    await rm(tmp, { recursive: true, force: true });
    return out;
  } catch (e) {
    const err = e instanceof LxrError ? e : bad(`reading archive ${JSON.stringify(source)}: ${(e as Error).message}`);
    return failAfterCleanup(err, [() => rm(tmp, { recursive: true, force: true })]);
  }
}

async function importDir(dir: string, target: ImportTarget, opts: ImportOptions): Promise<ImageRecord[]> {
  if (await exists(path.join(dir, 'oci-layout'))) return importOciLayout(dir, target, opts);
  if (await exists(path.join(dir, 'manifest.json'))) return importDockerSave(dir, target, opts);
  throw bad(`${JSON.stringify(dir)} is neither an OCI image layout (no oci-layout) nor a docker save archive (no manifest.json)`);
}

function configPlatform(c: ImageConfig): Platform {
  return { os: c.os ?? 'linux', architecture: c.architecture ?? 'unknown', ...(c.variant !== undefined ? { variant: c.variant } : {}) };
}

async function importOciLayout(dir: string, target: ImportTarget, opts: ImportOptions): Promise<ImageRecord[]> {
  const layout = await readJsonFile<{ imageLayoutVersion?: unknown }>(path.join(dir, 'oci-layout'), 'oci-layout');
  if (layout?.imageLayoutVersion !== '1.0.0') throw bad(`oci-layout: unsupported imageLayoutVersion ${JSON.stringify(layout?.imageLayoutVersion)}`);
  const index = await readJsonFile<ImageIndex>(path.join(dir, 'index.json'), 'index.json');
  if (!Array.isArray(index?.manifests)) throw bad('index.json has no manifests');
  const signal = opts.signal;
  const ingest = async (d: Descriptor): Promise<void> => {
    const { algorithm, hex } = parseDigest(d.digest, 'descriptor.digest');
    const file = path.join(dir, 'blobs', algorithm, hex);
    if (await target.blobs.has(d.digest)) return;
    if (!(await exists(file))) throw bad(`blob ${d.digest} is missing from the layout`);
    const real = await realInside(dir, file);
    await target.blobs.ingest(d.digest, d.size, () => createReadStream(real), signal ? { signal } : {});
  };
  const out: ImageRecord[] = [];
  for (const top of index.manifests) {
    let desc = top;
    let indexDigest: Digest | undefined;
    if (manifestKind(desc.mediaType) === 'index') {
      await ingest(desc);
      const nested = await target.blobs.readJson<ImageIndex>(desc.digest);
      indexDigest = desc.digest;
      desc = selectPlatform(nested.manifests ?? [], opts.platform ?? hostPlatform(), `index ${desc.digest}`);
    }
    if (manifestKind(desc.mediaType) !== 'manifest') throw bad(`index.json entry ${desc.digest} has unsupported media type ${JSON.stringify(desc.mediaType)}`);
    await ingest(desc);
    const manifest = await target.blobs.readJson<ImageManifest>(desc.digest);
    if (!manifest?.config || !Array.isArray(manifest.layers)) throw bad(`manifest ${desc.digest} has no config or layers`);
    await ingest(manifest.config);
    const config = await target.blobs.readJson<ImageConfig>(manifest.config.digest);
    for (const l of manifest.layers) await ingest(l);
    out.push(
      await target.commit({
        names: ociNames(top.annotations, opts.repository),
        manifestDigest: desc.digest,
        ...(indexDigest !== undefined ? { indexDigest } : {}),
        configDigest: manifest.config.digest,
        config,
        layers: manifest.layers,
        platform: desc.platform ?? configPlatform(config),
        signal,
      }),
    );
  }
  return out;
}

interface DockerSaveEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

async function fileDigest(file: string): Promise<{ digest: Digest; size: number; head: Buffer }> {
  const h = createHash('sha256');
  let size = 0;
  await pipeline(createReadStream(file), async function (chunks: AsyncIterable<Buffer>) {
    for await (const c of chunks) {
      h.update(c);
      size += c.length;
    }
  });
  const fh = await open(file, 'r');
  const head = Buffer.alloc(4);
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  return { digest: `sha256:${h.digest('hex')}`, size, head };
}

/** Pure: a layer's media type from its first bytes (docker save keeps them as they were). */
export function dockerLayerType(head: Buffer): string {
  if (head[0] === 0x1f && head[1] === 0x8b) return MediaType.DockerLayerGzip;
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return MediaType.DockerLayerZstd;
  return MediaType.DockerLayer;
}

async function importDockerSave(dir: string, target: ImportTarget, opts: ImportOptions): Promise<ImageRecord[]> {
  const entries = await readJsonFile<DockerSaveEntry[]>(path.join(dir, 'manifest.json'), 'manifest.json');
  if (!Array.isArray(entries)) throw bad('manifest.json is not a list');
  const signal = opts.signal;
  const ingestFile = async (named: string, mediaType?: string): Promise<Descriptor> => {
    const file = await realInside(dir, named);
    const { digest, size, head } = await fileDigest(file);
    await target.blobs.ingest(digest, size, () => createReadStream(file), signal ? { signal } : {});
    return { mediaType: mediaType ?? dockerLayerType(head), digest, size };
  };
  const out: ImageRecord[] = [];
  for (const [i, e] of entries.entries()) {
    if (typeof e?.Config !== 'string' || !Array.isArray(e.Layers)) throw bad(`manifest.json[${i}] has no Config or Layers`);
    const configDesc = await ingestFile(inside(dir, e.Config), MediaType.DockerConfig);
    const config = await target.blobs.readJson<ImageConfig>(configDesc.digest);
    const layers: Descriptor[] = [];
    for (const l of e.Layers) layers.push(await ingestFile(inside(dir, l)));
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.DockerManifest, config: configDesc, layers }, null, 3));
    const manifestDigest = digestOf(manifest);
    await target.blobs.ingest(manifestDigest, manifest.length, () => Readable.from([manifest]), signal ? { signal } : {});
    out.push(
      await target.commit({
        names: (e.RepoTags ?? []).map((t) => referenceString(withDefaultTag(parseReference(t)))),
        manifestDigest,
        configDigest: configDesc.digest,
        config,
        layers,
        platform: configPlatform(config),
        signal,
      }),
    );
  }
  return out;
}
