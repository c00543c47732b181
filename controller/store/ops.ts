// What the stores accept: keys, prefixes and commits are checked here once,
// and each value is turned into its JSON text, which is also how the stores
// keep it (so every read is a fresh copy).
import { invalidArgument } from '../../proto/shared/errors.js';
import type { StoreOp } from './store.js';

/** A checked op; a put carries its value as JSON text. */
export type CheckedOp = { type: 'put'; key: string; json: string; expect?: number } | { type: 'delete'; key: string; expect?: number };

export function checkKey(key: unknown, field = 'key'): string {
  if (typeof key !== 'string' || key === '') throw invalidArgument(field, 'a key must be a non-empty string');
  if (key.includes('\n')) throw invalidArgument(field, `key ${JSON.stringify(key)} contains a newline`);
  return key;
}

export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string') throw invalidArgument('prefix', 'must be a string');
  if (prefix.includes('\n')) throw invalidArgument('prefix', `prefix ${JSON.stringify(prefix)} contains a newline`);
  return prefix;
}

export function checkOps(ops: unknown): CheckedOp[] {
  if (!Array.isArray(ops) || ops.length === 0) throw invalidArgument('ops', 'a commit needs at least one op');
  const seen = new Set<string>();
  return ops.map((op: StoreOp, i): CheckedOp => {
    const at = `ops[${i}]`;
    if (typeof op !== 'object' || op === null) throw invalidArgument(at, 'must be an op object');
    const key = checkKey(op.key, `${at}.key`);
    // As in etcd: one change per key per commit, so `expect` has one meaning.
    if (seen.has(key)) throw invalidArgument(`${at}.key`, `key ${JSON.stringify(key)} appears twice in one commit`);
    seen.add(key);
    const { expect } = op;
    if (expect !== undefined && (typeof expect !== 'number' || !Number.isInteger(expect) || expect < 0)) {
      throw invalidArgument(`${at}.expect`, `${String(expect)} is not a revision (a whole number >= 0)`);
    }
    const exp = expect === undefined ? {} : { expect };
    if (op.type === 'delete') return { type: 'delete', key, ...exp };
    if (op.type === 'put') return { type: 'put', key, json: toJson(op.value, `${at}.value`, key), ...exp };
    throw invalidArgument(`${at}.type`, `${JSON.stringify((op as { type: unknown }).type)} is neither "put" nor "delete"`);
  });
}

/** JSON text of plain data; refuses what JSON.stringify would choke on, drop or mangle. */
function toJson(value: unknown, field: string, key: string): string {
  try {
    return JSON.stringify(value, function (this: unknown, k: string, v: unknown) {
      const where = k === '' ? 'it' : Array.isArray(this) ? `element ${k}` : `property ${JSON.stringify(k)}`;
      if (v === undefined && (k === '' || Array.isArray(this))) throw new Error(`${where} is undefined`);
      if (typeof v === 'function' || typeof v === 'symbol' || typeof v === 'bigint') throw new Error(`${where} is a ${typeof v}`);
      if (typeof v === 'number' && !Number.isFinite(v)) throw new Error(`${where} is ${v}`);
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
        const proto = Object.getPrototypeOf(v) as unknown;
        if (proto !== Object.prototype && proto !== null) throw new Error(`${where} is a ${(v as object).constructor?.name ?? 'non-plain object'}, not plain data`);
      }
      return v;
    }) as string;
  } catch (e) {
    // A cycle's message from V8 runs over several lines; its first says it all.
    throw invalidArgument(field, `the value of ${JSON.stringify(key)} is not JSON data: ${(e as Error).message.split('\n')[0]}`);
  }
}
