// Image media types (OCI image spec and Docker schema 2): which documents a
// registry may answer with, what each one is, and how a layer is compressed.
// One table, so the client's Accept header and its checks never disagree.

import { LxrError } from '../../../proto/shared/errors.js';

export const MediaType = {
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNondistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestV1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerManifestV1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayerZstd: 'application/vnd.docker.image.rootfs.diff.tar.zstd',
  DockerLayerForeign: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** What a manifest-endpoint document is. */
export type ManifestKind = 'index' | 'manifest' | 'schema1';

const MANIFEST_KINDS: Record<string, ManifestKind> = {
  [MediaType.OciIndex]: 'index',
  [MediaType.DockerManifestList]: 'index',
  [MediaType.OciManifest]: 'manifest',
  [MediaType.DockerManifest]: 'manifest',
  [MediaType.DockerManifestV1]: 'schema1',
  [MediaType.DockerManifestV1Signed]: 'schema1',
};

/** The kind of a manifest media type; undefined for anything else. */
export function manifestKind(mediaType: string | undefined): ManifestKind | undefined {
  if (mediaType === undefined || !Object.hasOwn(MANIFEST_KINDS, mediaType)) return undefined;
  return MANIFEST_KINDS[mediaType];
}

/**
 * Sent as Accept on manifest requests. Listing the indexes lets the registry
 * answer a multi-platform tag with the whole list (so we choose the platform);
 * schema 1 is deliberately absent so registries that can convert do so.
 */
export const MANIFEST_ACCEPT: readonly string[] = [MediaType.OciIndex, MediaType.DockerManifestList, MediaType.OciManifest, MediaType.DockerManifest];

export function isImageConfig(mediaType: string): boolean {
  return mediaType === MediaType.OciConfig || mediaType === MediaType.DockerConfig;
}

export type LayerCompression = 'none' | 'gzip' | 'zstd';

export interface LayerType {
  compression: LayerCompression;
  /**
   * Foreign / non-distributable layers (Windows base layers) are not served
   * by the registry but from the descriptor's `urls`, under their publisher's
   * licence terms; LXR runs Linux images and does not fetch them.
   */
  foreign: boolean;
}

const LAYERS: Record<string, LayerType> = {
  [MediaType.OciLayer]: { compression: 'none', foreign: false },
  [MediaType.OciLayerGzip]: { compression: 'gzip', foreign: false },
  [MediaType.OciLayerZstd]: { compression: 'zstd', foreign: false },
  [MediaType.DockerLayer]: { compression: 'none', foreign: false },
  [MediaType.DockerLayerGzip]: { compression: 'gzip', foreign: false },
  [MediaType.DockerLayerZstd]: { compression: 'zstd', foreign: false },
  [MediaType.OciLayerNondistributable]: { compression: 'none', foreign: true },
  [MediaType.OciLayerNondistributableGzip]: { compression: 'gzip', foreign: true },
  [MediaType.OciLayerNondistributableZstd]: { compression: 'zstd', foreign: true },
  [MediaType.DockerLayerForeign]: { compression: 'gzip', foreign: true },
};

/** The layer type, or undefined when the media type is not a layer LXR knows. */
export function layerType(mediaType: string): LayerType | undefined {
  return Object.hasOwn(LAYERS, mediaType) ? { ...LAYERS[mediaType]! } : undefined;
}

/**
 * How a pullable layer is compressed. Unknown types and foreign layers are
 * LXR_UNSUPPORTED with a message saying which and why.
 */
export function layerCompression(mediaType: string): LayerCompression {
  const t = layerType(mediaType);
  if (t === undefined) {
    throw new LxrError('LXR_UNSUPPORTED', `unsupported layer media type ${JSON.stringify(mediaType)}: LXR pulls uncompressed, gzip and zstd tar layers`, { field: 'mediaType' });
  }
  if (t.foreign) {
    throw new LxrError(
      'LXR_UNSUPPORTED',
      `layer media type ${JSON.stringify(mediaType)} is a foreign (non-distributable) layer, fetched from outside the registry; such layers belong to Windows images, which LXR does not run`,
      { field: 'mediaType' },
    );
  }
  return t.compression;
}
