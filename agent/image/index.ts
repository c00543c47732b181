// The image module's public surface: references, digests, the blob store,
// the registry client, layer and image stores, and the service that pulls,
// imports, lists, removes and garbage-collects images. (Unpacking lives
// beside them and is exported from its own files.)

export * from './reference.js';
export * from './digest.js';
export * from './blob-store.js';
export { ImageService } from './service.js';
