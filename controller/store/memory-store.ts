// The store's semantics without a disk, for unit tests of the code above it.
import { LxrError } from '../../proto/shared/errors.js';
import { checkKey, checkOps, checkPrefix } from './ops.js';
import type { Store, StoredRecord, StoreOp } from './store.js';
import { Table } from './table.js';

export class MemoryStore implements Store {
  private readonly table = new Table();
  private closed = false;

  get revision(): number {
    return this.table.revision;
  }

  private usable(): void {
    if (this.closed) throw new LxrError('LXR_UNAVAILABLE', 'the memory store is closed');
  }

  async get<T>(key: string): Promise<StoredRecord<T> | undefined> {
    this.usable();
    return this.table.get<T>(checkKey(key));
  }

  async list<T>(prefix: string): Promise<StoredRecord<T>[]> {
    this.usable();
    return this.table.list<T>(checkPrefix(prefix));
  }

  async commit(ops: StoreOp[]): Promise<number> {
    this.usable();
    const batch = this.table.batch();
    const revision = batch.stage(checkOps(ops));
    batch.apply();
    return revision;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
