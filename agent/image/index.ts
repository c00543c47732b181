// The image module's public surface: references, digests and the blob store
// (unpacking lives beside them and is exported from its own files).

export * from './reference.js';
export * from './digest.js';
export * from './blob-store.js';
