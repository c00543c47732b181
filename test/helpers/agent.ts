// What the agent's end-to-end tests share: when they can run, a busybox
// image to push to a loopback registry, a directory as a tar layer, and
// collecting a server stream.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ImagesClient, unary } from '../../proto/shared/api.js';
import { FIELD_KEY, fromStatus, REASON_KEY } from '../../proto/shared/grpc-errors.js';
import { c as createTar } from 'tar';
import { hostPlatform } from '../../agent/image/registry/platform.js';
import { ociImageOf, writeOciLayout, type TestImage } from './oci-image.js';
import { REGISTRY_BIN, REGISTRY_SKIP, startRegistry, TestPusher, type TestRegistry } from './registry.js';
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
  const config = { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'], WorkingDir: '/', ...(Object.keys(labels).length ? { Labels: labels } : {}) };
  return ociImageOf([tar], hostPlatform(), config);
}

/** Every message of a server stream, once it ends. */
export const collect = <T>(s: grpc.ClientReadableStream<T>): Promise<T[]> =>
  new Promise((resolve, reject) => {
    const out: T[] = [];
    s.on('data', (m: T) => out.push(m));
    s.on('error', reject);
    s.on('end', () => resolve(out));
  });

/** A loopback registry serving the busybox image as `<host>/lxr/busybox:v1`; stop() the registry when done. */
export async function busyboxRegistry(dir: string, labels: Record<string, string> = {}): Promise<{ reg: TestRegistry; image: string; img: TestImage }> {
  const reg = await startRegistry();
  try {
    const img = await busyboxImage(dir, labels);
    const pusher = new TestPusher(reg.host);
    try {
      await pusher.pushImage('lxr/busybox', img, 'v1');
    } finally {
      pusher.close();
    }
    return { reg, image: `${reg.host}/lxr/busybox:v1`, img };
  } catch (e) {
    await reg.stop();
    throw e;
  }
}

/** Runs every cleanup step even when some fail; `done` throws them all together. */
export function cleanupSteps(): { step: (f: () => unknown) => Promise<void>; done: (what: string) => void } {
  const errors: unknown[] = [];
  return {
    async step(f) {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    },
    done(what) {
      if (errors.length) throw new AggregateError(errors, `${what} cleanup failed`);
    },
  };
}

/** An assert.rejects predicate: the call failed with `code`, trailer lxr-reason `reason` (and lxr-field `field`). */
export const grpcErr = (code: grpc.status, reason: string, opts: { field?: string; message?: RegExp } = {}) => (e: unknown) => {
  const err = e as grpc.ServiceError;
  assert.equal(err.code, code, String(err.details));
  assert.deepEqual(err.metadata.get(REASON_KEY), [reason], err.details);
  if (opts.field !== undefined) assert.deepEqual(err.metadata.get(FIELD_KEY), [opts.field], err.details);
  if (opts.message) assert.match(err.details, opts.message);
  assert.equal(fromStatus(err).reason, reason);
  return true;
};

/** Builds the busybox image as `ref` in an OCI layout under `work` and imports it on every agent (by unix socket). */
export async function importBusyboxOn(work: string, sockets: string[], ref: string): Promise<void> {
  const layout = path.join(work, 'layout');
  await writeOciLayout(layout, await busyboxImage(work), ref);
  for (const socket of sockets) {
    const c = new ImagesClient(`unix://${socket}`, grpc.credentials.createInsecure());
    try {
      await unary(c, c.Import, { path: layout });
    } finally {
      c.close();
    }
  }
}
