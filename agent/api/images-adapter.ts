// lxr.agent.v1.Images over ImageService: proto <-> domain only.
import type * as grpc from '@grpc/grpc-js';
import type * as T from '../../proto/shared/api-types.js';
import { invalidArgument } from '../../proto/shared/errors.js';
import type { Platform } from '../image/registry/platform.js';
import type { ImageInspect, ImageService } from '../image/service.js';
import { serverStream, unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';

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
  };
}
