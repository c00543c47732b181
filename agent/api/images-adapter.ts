// lxr.agent.v1.Images over ImageService: proto <-> domain, plus Load's
// spooling of a streamed archive to a file under the state root, which the
// import then reads like any host path.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type * as T from '../../proto/shared/api-types.js';
import { failAfterCleanup, invalidArgument, LxrError } from '../../proto/shared/errors.js';
import { processRunning } from '../../proto/shared/proc.js';
import type { Platform } from '../image/registry/platform.js';
import type { ImageInspect, ImageService } from '../image/service.js';
import { clientStream, serverStream, unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';

const toPlatform = (p: Platform): T.Platform => ({ os: p.os, architecture: p.architecture, variant: p.variant ?? '' });

export function toImage(i: ImageInspect): T.Image {
  return {
    names: i.names,
    digest: i.manifestDigest,
    configDigest: i.configDigest,
    platform: toPlatform(i.platform),
    sizeBytes: i.layers.reduce((s, l) => s + l.unpackedSize, 0),
    created: i.created,
  };
}

const required = (v: string | undefined, field: string): string => {
  if (!v) throw invalidArgument(field, 'is required');
  return v;
};

/**
 * Load's scratch space: <images root>/load/<pid>-<rand>/ per call, holding
 * the spooled archive and the import's extraction. The pid in the name lets
 * a later agent remove what a crashed one left.
 */
async function loadDir(images: ImageService): Promise<string> {
  const root = path.join(images.blobs.root, 'load');
  await mkdir(root, { recursive: true, mode: 0o700 });
  for (const name of await readdir(root)) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1] ?? 0);
    if (pid !== process.pid && !(pid > 0 && processRunning(pid))) await rm(path.join(root, name), { recursive: true, force: true });
  }
  const dir = path.join(root, `${process.pid}-${randomBytes(6).toString('hex')}`);
  await mkdir(dir, { mode: 0o700 });
  return dir;
}

/**
 * Writes the data of every request to `file`; the repository of the first.
 * Each write is awaited before the next request is read, so a slow disk
 * pauses the client instead of filling memory.
 */
async function spool(requests: AsyncIterable<T.LoadImageRequest>, file: string): Promise<{ bytes: number; repository: string }> {
  const fh = await open(file, 'wx', 0o600);
  let bytes = 0;
  let repository: string | undefined;
  try {
    for await (const r of requests) {
      repository ??= r.repository ?? '';
      if (r.data && r.data.length > 0) {
        await fh.write(r.data);
        bytes += r.data.length;
      }
    }
  } finally {
    await fh.close();
  }
  return { bytes, repository: repository ?? '' };
}

/** The import names its source (our scratch paths); the client sent `data` and knows no paths. */
function asDataError(e: unknown, dir: string): unknown {
  if (!(e instanceof LxrError)) return e;
  const quoted = new RegExp(`(?:archive )?"${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[^"]*"`, 'g');
  const message = e.message.replace(quoted, 'the archive').replace(/^invalid argument source:/, 'invalid argument data:');
  const field = e.field === 'source' ? 'data' : e.field;
  if (message === e.message && field === e.field) return e;
  return new LxrError(e.reason, message, { cause: e, ...(field !== undefined ? { field } : {}), ...(e.errno !== undefined ? { errno: e.errno } : {}), ...(e.step !== undefined ? { step: e.step } : {}) });
}

export function imagesHandlers(ctx: AdapterContext, images: ImageService): grpc.UntypedServiceImplementation {
  return {
    Pull: serverStream<T.PullRequest, T.PullResponse>(ctx, 'Images.Pull', async (req, send, signal) => {
      const ref = required(req.image, 'image');
      const p = req.platform;
      const platform: Platform | undefined = p && (p.os || p.architecture) ? { os: p.os || 'linux', architecture: p.architecture ?? '', ...(p.variant ? { variant: p.variant } : {}) } : undefined;
      const img = await images.pull(ref, {
        signal,
        ...(platform ? { platform } : {}),
        onProgress: (ev) => send({ progress: { digest: ev.layer, state: ev.state, current: ev.current, total: ev.total } }),
      });
      send({ image: toImage(img) });
    }),
    List: unary<T.ListImagesRequest, T.ListImagesResponse>(ctx, 'Images.List', async () => {
      const out: T.Image[] = [];
      for (const r of await images.list()) out.push(toImage(await images.inspect(r.manifestDigest)));
      return { images: out };
    }),
    Inspect: unary<T.InspectImageRequest, T.InspectImageResponse>(ctx, 'Images.Inspect', async (req) => {
      const i = await images.inspect(required(req.image, 'image'));
      return {
        image: toImage(i),
        config: {
          entrypoint: i.config.Entrypoint ?? [],
          cmd: i.config.Cmd ?? [],
          env: i.config.Env,
          workingDir: i.config.WorkingDir,
          user: i.config.User,
          exposedPorts: Object.keys(i.config.ExposedPorts).sort(),
          labels: i.config.Labels,
        },
        layers: i.layers.map((l) => l.blob),
      };
    }),
    Remove: unary<T.RemoveImageRequest, T.RemoveImageResponse>(ctx, 'Images.Remove', async (req) => {
      const r = await images.remove(required(req.image, 'image'));
      return { untagged: r.untagged, deleted: r.deleted ?? '' };
    }),
    Import: unary<T.ImportImageRequest, T.ImportImageResponse>(ctx, 'Images.Import', async (req, call) => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      const imported = await images.import(required(req.path, 'path'), { signal: ac.signal, ...(req.repository ? { repository: req.repository } : {}) });
      return { images: imported.map(toImage) };
    }),
    Load: clientStream<T.LoadImageRequest, T.ImportImageResponse>(ctx, 'Images.Load', async (requests, signal) => {
      const dir = await loadDir(images);
      try {
        const file = path.join(dir, 'archive.tar');
        const { bytes, repository } = await spool(requests, file);
        if (bytes === 0) throw invalidArgument('data', 'no archive was sent: the stream carried no bytes');
        const imported = await images.import(file, { signal, tmpDir: dir, ...(repository ? { repository } : {}) });
        await rm(dir, { recursive: true, force: true });
        return { images: imported.map(toImage) };
      } catch (e) {
        return failAfterCleanup(asDataError(e, dir), [() => rm(dir, { recursive: true, force: true })]);
      }
    }),
  };
}
