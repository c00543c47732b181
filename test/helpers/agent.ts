// What the agent's end-to-end tests share: when they can run, a busybox
// image to push to a loopback registry, a directory as a tar layer, and
// collecting a server stream.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { c as createTar } from 'tar';
import { digestOf } from '../../agent/image/digest.js';
import { MediaType } from '../../agent/image/registry/mediatypes.js';
import { hostPlatform } from '../../agent/image/registry/platform.js';
import { blob, compress, type TestImage } from './oci-image.js';
import { REGISTRY_BIN, REGISTRY_SKIP } from './registry.js';
import { makeBusyboxRootfs } from './rootfs.js';

/** Skip reason for tests needing root and Debian's docker-registry, or false. */
export const agentTestSkip: string | false =
  process.getuid?.() !== 0 ? 'needs root (containers, cgroups)' : existsSync(REGISTRY_BIN) ? false : REGISTRY_SKIP;

/** A directory as an uncompressed tar layer (sorted, portable headers). */
export async function tarDir(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of createTar({ cwd: dir, portable: true }, (await readdir(dir)).sort())) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

/** A one-layer OCI image of a busybox rootfs for the host platform. */
export async function busyboxImage(dir: string, labels: Record<string, string> = {}): Promise<TestImage> {
  const rootfs = path.join(dir, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  const tar = await tarDir(rootfs);
  const platform = hostPlatform();
  const layer = blob(MediaType.OciLayerGzip, compress(tar, 'gzip'));
  const configJson = {
    created: '2024-01-01T00:00:00Z',
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'], WorkingDir: '/', ...(Object.keys(labels).length ? { Labels: labels } : {}) },
    rootfs: { type: 'layers', diff_ids: [digestOf(tar)] },
  };
  const config = blob(MediaType.OciConfig, Buffer.from(JSON.stringify(configJson)));
  const d = (b: { mediaType: string; digest: string; size: number }) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = blob(MediaType.OciManifest, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: d(config), layers: [d(layer)] })));
  return { format: 'oci', platform, manifest, config, layers: [layer], diffIds: [digestOf(tar)], tars: [tar] };
}

/** Every message of a server stream, once it ends. */
export const collect = <T>(s: grpc.ClientReadableStream<T>): Promise<T[]> =>
  new Promise((resolve, reject) => {
    const out: T[] = [];
    s.on('data', (m: T) => out.push(m));
    s.on('error', reject);
    s.on('end', () => resolve(out));
  });
