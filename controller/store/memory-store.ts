// The store's semantics without a disk, for unit tests of the code above it.
import { checkOps } from './ops.js';
import type { StoreOp } from './store.js';
import { Table } from './table.js';
import { TableStore } from './table-store.js';

export class MemoryStore extends TableStore {
  constructor() {
    super(new Table(), 'the memory store');
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
