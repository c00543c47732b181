// lxr.controller.v1.Images over ClusterImageService: proto <-> domain only
// (Import's first message is the header; the data of all of them is the
// archive).
import type * as grpc from '@grpc/grpc-js';
import type * as C from '../../proto/shared/controller-types.js';
import { invalidArgument } from '../../proto/shared/errors.js';
import { clientStream, serverStream, unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import type { ClusterImageService } from '../images/image-service.js';

/** The data of every message; a header anywhere but the first is refused. */
async function* archiveData(first: C.ClusterImportImageRequest | undefined, rest: AsyncIterator<C.ClusterImportImageRequest>): AsyncGenerator<Buffer> {
  if (first?.data?.length) yield first.data;
  for (let n = await rest.next(); !n.done; n = await rest.next()) {
    if (n.value.header) throw invalidArgument('header', 'only the first message may carry the header');
    if (n.value.data?.length) yield n.value.data;
  }
}

export function imagesHandlers(ctx: AdapterContext, images: ClusterImageService): grpc.UntypedServiceImplementation {
  return {
    Pull: serverStream<C.ClusterPullImageRequest, C.ClusterPullImageResponse>(ctx, 'Images.Pull', async (req, send, signal) => {
      await images.pull({ image: req.image ?? '', hosts: req.hosts ?? [], platform: req.platform ?? null }, send, signal);
    }),
    List: unary<C.ClusterListImagesRequest, C.ClusterListImagesResponse>(ctx, 'Images.List', async (req) => images.list(req.host || undefined)),
    Remove: unary<C.ClusterRemoveImageRequest, C.ClusterRemoveImageResponse>(ctx, 'Images.Remove', async (req) => ({ removed: await images.remove({ image: req.image ?? '', hosts: req.hosts ?? [] }) })),
    Import: clientStream<C.ClusterImportImageRequest, C.ClusterImportImageResponse>(ctx, 'Images.Import', async (requests, signal) => {
      const it = requests[Symbol.asyncIterator]();
      const first = await it.next();
      const head = first.done ? undefined : first.value;
      const header = head?.header ?? {};
      const imported = await images.import({ hosts: header.hosts ?? [], repository: header.repository ?? '' }, archiveData(head, it), signal);
      return { imported };
    }),
  };
}
