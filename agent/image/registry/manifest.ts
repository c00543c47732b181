// Image manifests and indexes (OCI image spec, Docker schema 2): their types,
// and the parsing that decides what a registry's answer is and refuses
// anything malformed before a digest or size from it is trusted.

import { LxrError } from '../../../proto/shared/errors.js';
import { type Digest, parseDigest } from '../digest.js';
import { isImageConfig, layerCompression, manifestKind, MediaType } from './mediatypes.js';
import type { Platform } from './platform.js';

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform & { 'os.version'?: string; 'os.features'?: string[] };
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** The image config (OCI image-spec config.md); only what LXR reads is typed. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    ExposedPorts?: Record<string, object>;
    Volumes?: Record<string, object>;
    Labels?: Record<string, string>;
    StopSignal?: string;
  };
  rootfs: { type: string; diff_ids: Digest[] };
  history?: Array<Record<string, unknown>>;
}

export type ManifestDocument = { kind: 'index'; mediaType: string; index: ImageIndex } | { kind: 'manifest'; mediaType: string; manifest: ImageManifest };

const bad = (where: string, problem: string): LxrError => new LxrError('LXR_INVALID_ARGUMENT', `invalid manifest ${where}: ${problem}`, { field: 'manifest' });

function checkDescriptor(d: unknown, where: string, field: string): Descriptor {
  if (d === null || typeof d !== 'object') throw bad(where, `${field} is not an object`);
  const o = d as Record<string, unknown>;
  if (typeof o['mediaType'] !== 'string' || o['mediaType'] === '') throw bad(where, `${field}.mediaType is missing`);
  if (typeof o['digest'] !== 'string') throw bad(where, `${field}.digest is missing`);
  try {
    parseDigest(o['digest']);
  } catch (e) {
    throw bad(where, `${field}.digest: ${(e as Error).message}`);
  }
  if (typeof o['size'] !== 'number' || !Number.isSafeInteger(o['size']) || o['size'] < 0) throw bad(where, `${field}.size is not a non-negative integer`);
  return d as Descriptor;
}

/**
 * Decides what a manifest-endpoint answer is: the document's own mediaType
 * field, else the Content-Type, else its shape (OCI lets mediaType be
 * omitted). Schema 1 is LXR_UNSUPPORTED; malformed documents and image
 * manifests whose config or layers LXR cannot use are refused here.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined, where: string): ManifestDocument {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw bad(where, `not valid JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad(where, 'not a JSON object');
  const o = json as Record<string, unknown>;
  const ct = contentType?.split(';')[0]?.trim().toLowerCase();
  const declared = typeof o['mediaType'] === 'string' ? o['mediaType'] : undefined;
  if (o['schemaVersion'] === 1 || manifestKind(declared) === 'schema1' || (declared === undefined && manifestKind(ct) === 'schema1')) {
    throw new LxrError(
      'LXR_UNSUPPORTED',
      `${where} is a Docker image manifest schema 1 (deprecated since 2017, removed from Docker 20.10 on): LXR pulls schema 2 and OCI images; re-push the image with a current client`,
      { field: 'manifest' },
    );
  }
  if (o['schemaVersion'] !== 2) throw bad(where, `schemaVersion is ${JSON.stringify(o['schemaVersion'])}, want 2`);
  let mediaType = declared ?? (manifestKind(ct) !== undefined ? ct! : undefined);
  if (mediaType === undefined) {
    if (Array.isArray(o['manifests'])) mediaType = MediaType.OciIndex;
    else if (o['config'] !== undefined) mediaType = MediaType.OciManifest;
    else throw bad(where, `no mediaType and Content-Type ${JSON.stringify(contentType ?? '')} is not a manifest type`);
  }
  const kind = manifestKind(mediaType);
  if (kind === 'index') {
    if (!Array.isArray(o['manifests'])) throw bad(where, 'index has no "manifests" array');
    o['manifests'].forEach((d, i) => checkDescriptor(d, where, `manifests[${i}]`));
    return { kind, mediaType, index: json as ImageIndex };
  }
  if (kind === 'manifest') {
    const config = checkDescriptor(o['config'], where, 'config');
    if (!isImageConfig(config.mediaType)) {
      throw new LxrError('LXR_UNSUPPORTED', `${where} is not a container image: its config media type is ${JSON.stringify(config.mediaType)}`, { field: 'manifest' });
    }
    if (!Array.isArray(o['layers'])) throw bad(where, 'manifest has no "layers" array');
    o['layers'].forEach((d, i) => {
      const l = checkDescriptor(d, where, `layers[${i}]`);
      try {
        layerCompression(l.mediaType);
      } catch (e) {
        throw new LxrError((e as LxrError).reason, `${where}: layers[${i}]: ${(e as Error).message}`, { field: 'manifest' });
      }
    });
    return { kind, mediaType, manifest: json as ImageManifest };
  }
  throw new LxrError('LXR_UNSUPPORTED', `${where} has media type ${JSON.stringify(mediaType)}, which is not an image index or manifest`, { field: 'manifest' });
}
