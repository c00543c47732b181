// Test images built in memory: tar layers from {path: content} maps (plain,
// gzip, zstd), their config with diff_ids, OCI or Docker schema 2 manifests,
// and indexes / manifest lists over several platforms.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { type Digest, digestOf } from '../../agent/image/digest.js';
import { MediaType } from '../../agent/image/registry/mediatypes.js';
import type { Platform } from '../../agent/image/registry/platform.js';

export interface Blob {
  mediaType: string;
  digest: Digest;
  size: number;
  data: Buffer;
}

export type Compression = 'none' | 'gzip' | 'zstd';
export type Format = 'oci' | 'docker';

export function blob(mediaType: string, data: Buffer): Blob {
  return { mediaType, digest: digestOf(data), size: data.length, data };
}

function octal(h: Buffer, off: number, len: number, v: number): void {
  h.write(v.toString(8).padStart(len - 1, '0') + '\0', off, len, 'ascii');
}

/**
 * A ustar archive of regular files (parent directories added), written
 * directly so the bytes, and so the digests, are the same on every run.
 */
export function tarOf(files: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  const dirs = new Set<string>();
  const entry = (name: string, type: '0' | '5', body: Buffer): void => {
    if (Buffer.byteLength(name) > 99) throw new Error(`test tar: name too long: ${name}`);
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, 'utf8');
    octal(h, 100, 8, type === '5' ? 0o755 : 0o644);
    octal(h, 108, 8, 0);
    octal(h, 116, 8, 0);
    octal(h, 124, 12, body.length);
    octal(h, 136, 12, 1_700_000_000);
    h.write(type, 156, 1, 'ascii');
    h.write('ustar\0', 257, 6, 'ascii');
    h.write('00', 263, 2, 'ascii');
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
    parts.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  };
  for (const [p, content] of Object.entries(files)) {
    const segs = p.replace(/^\/+/, '').split('/');
    for (let i = 1; i < segs.length; i++) {
      const d = segs.slice(0, i).join('/') + '/';
      if (!dirs.has(d)) {
        dirs.add(d);
        entry(d, '5', Buffer.alloc(0));
      }
    }
    entry(segs.join('/'), '0', Buffer.isBuffer(content) ? content : Buffer.from(content));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

let zstdChecked: boolean | undefined;
/** Whether the zstd CLI (Debian package zstd) is installed. */
export function zstdAvailable(): boolean {
  zstdChecked ??= spawnSync('zstd', ['--version'], { stdio: 'ignore' }).status === 0;
  return zstdChecked;
}
export const ZSTD_SKIP = 'the zstd CLI is not installed (Debian package zstd)';

export function compress(data: Buffer, c: Compression): Buffer {
  if (c === 'gzip') return gzipSync(data);
  if (c === 'zstd') return execFileSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 1 << 28 });
  return data;
}

const LAYER_TYPES: Record<Format, Record<Compression, string>> = {
  oci: { none: MediaType.OciLayer, gzip: MediaType.OciLayerGzip, zstd: MediaType.OciLayerZstd },
  docker: { none: MediaType.DockerLayer, gzip: MediaType.DockerLayerGzip, zstd: MediaType.DockerLayerZstd },
};

export interface LayerSpec {
  files: Record<string, string | Buffer>;
  compression?: Compression;
}

export interface ImageSpec {
  format?: Format;
  platform?: Platform;
  layers: LayerSpec[];
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
}

export interface TestImage {
  format: Format;
  platform: Platform;
  manifest: Blob;
  config: Blob;
  layers: Blob[];
  diffIds: Digest[];
  /** Uncompressed tars, per layer. */
  tars: Buffer[];
}

/** Every blob of the image (config and layers), for pushing. */
export const imageBlobs = (img: TestImage): Blob[] => [img.config, ...img.layers];

export function buildImage(spec: ImageSpec): TestImage {
  const format = spec.format ?? 'oci';
  const platform = spec.platform ?? { os: 'linux', architecture: 'amd64' };
  const tars = spec.layers.map((l) => tarOf(l.files));
  const layers = spec.layers.map((l, i) => blob(LAYER_TYPES[format][l.compression ?? 'gzip'], compress(tars[i]!, l.compression ?? 'gzip')));
  const diffIds = tars.map((t) => digestOf(t));
  const configJson = {
    created: '2024-01-01T00:00:00Z',
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    config: {
      Env: spec.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...(spec.entrypoint !== undefined ? { Entrypoint: spec.entrypoint } : {}),
      Cmd: spec.cmd ?? ['/bin/sh'],
      WorkingDir: '/',
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'lxr test' })),
  };
  const config = blob(format === 'oci' ? MediaType.OciConfig : MediaType.DockerConfig, Buffer.from(JSON.stringify(configJson)));
  const descriptor = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifestType = format === 'oci' ? MediaType.OciManifest : MediaType.DockerManifest;
  const manifestJson = { schemaVersion: 2, mediaType: manifestType, config: descriptor(config), layers: layers.map(descriptor) };
  const manifest = blob(manifestType, Buffer.from(JSON.stringify(manifestJson, null, 2)));
  return { format, platform, manifest, config, layers, diffIds, tars };
}

/** An OCI index or Docker manifest list over the images, in order. */
export function buildIndex(images: TestImage[], format: Format = images[0]?.format ?? 'oci'): Blob {
  const mediaType = format === 'oci' ? MediaType.OciIndex : MediaType.DockerManifestList;
  const json = {
    schemaVersion: 2,
    mediaType,
    manifests: images.map((img) => ({ mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.size, platform: img.platform })),
  };
  return blob(mediaType, Buffer.from(JSON.stringify(json, null, 2)));
}

/** linux/amd64 and linux/arm64/v8 images with different content, plus their index. */
export function twoPlatformImage(format: Format = 'oci', compression: Compression = 'gzip'): { index: Blob; images: TestImage[] } {
  const platforms: Platform[] = [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ];
  const images = platforms.map((platform) =>
    buildImage({
      format,
      platform,
      layers: [
        { files: { 'etc/os-release': `ID=lxrtest\nARCH=${platform.architecture}\n` }, compression },
        { files: { 'bin/hello': `#!/bin/sh\necho hello from ${platform.architecture}\n`, 'etc/motd': 'hi\n' }, compression },
      ],
      entrypoint: ['/bin/hello'],
    }),
  );
  return { index: buildIndex(images, format), images };
}

/**
 * A one-platform OCI image of ready-made tar layers (buildImage only knows
 * regular files); `config` is the image config's "config" object.
 */
export function ociImageOf(tars: Buffer[], platform: Platform, config: Record<string, unknown>, zstd: boolean[] = []): TestImage {
  const layers = tars.map((t, i) => (zstd[i] ? blob(MediaType.OciLayerZstd, compress(t, 'zstd')) : blob(MediaType.OciLayerGzip, compress(t, 'gzip'))));
  const diffIds = tars.map((t) => digestOf(t));
  const configJson = {
    created: '2024-01-01T00:00:00Z',
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    config,
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
  const cfg = blob(MediaType.OciConfig, Buffer.from(JSON.stringify(configJson)));
  const d = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = blob(MediaType.OciManifest, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: d(cfg), layers: layers.map(d) })));
  return { format: 'oci', platform, manifest, config: cfg, layers, diffIds, tars };
}

/** Writes `img` as an OCI image layout directory naming it `ref`, for import. */
export async function writeOciLayout(dir: string, img: TestImage, ref: string): Promise<void> {
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const b of [img.manifest, img.config, ...img.layers]) await writeFile(path.join(dir, 'blobs', 'sha256', b.digest.slice(7)), b.data);
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [{ mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.size, annotations: { 'org.opencontainers.image.ref.name': ref } }],
  };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
}
