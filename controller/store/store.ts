// The controller's durable state behind one etcd-shaped interface: keys,
// per-key revisions and atomic compare-and-set commits. LogStore keeps it on
// local disk; MemoryStore is the same semantics for tests; a distributed
// store (etcd) can implement the same interface later.

export interface StoredRecord<T = unknown> {
  key: string;
  value: T;
  /** The store revision of the last change to this key (etcd's mod_revision). */
  revision: number;
}

/** `expect`: the key's current revision must equal it; 0 = the key must not exist. */
export type StoreOp =
  | { type: 'put'; key: string; value: unknown; expect?: number }
  | { type: 'delete'; key: string; expect?: number };

/**
 * Keys are non-empty strings without '\n' ("hosts/n1", "workspaces/ws1");
 * values are JSON data, copied in and out: a caller changing a value it
 * passed or got back never changes the store.
 */
export interface Store {
  get<T>(key: string): Promise<StoredRecord<T> | undefined>;
  /** The records whose key starts with `prefix`, sorted by key. */
  list<T>(prefix: string): Promise<StoredRecord<T>[]>;
  /**
   * Applies all ops or none, at one new store revision (one more than the
   * last), resolving with it once durable. An `expect` that does not hold
   * rejects with LXR_CONFLICT naming the key and both revisions. Deleting a
   * missing key without `expect` is a no-op.
   */
  commit(ops: StoreOp[]): Promise<number>;
  /** The revision of the last durable commit (0: none yet). */
  readonly revision: number;
  close(): Promise<void>;
}
