// The controller's store: the interface and its two implementations.
export type { Store, StoredRecord, StoreOp } from './store.js';
export { MemoryStore } from './memory-store.js';
export { LogStore, type LogStoreOptions } from './log-store.js';
