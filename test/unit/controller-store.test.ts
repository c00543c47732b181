// The controller's store: one table of semantics (keys, prefixes, revisions,
// compare-and-set, atomicity, copies, bad input) run against MemoryStore and
// LogStore; then LogStore on disk: reopen, torn and bad journal lines,
// compaction (also cut short), group commit, a failed write, and a writer
// SIGKILLed at a random moment losing no acknowledged commit.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { LogStore, MemoryStore, type Store, type StoreOp } from '../../controller/store/index.js';
import { LxrError, type Reason } from '../../proto/shared/errors.js';
import type { Journal } from '../../proto/shared/journal.js';
import { runUntilKilled } from '../helpers/sigkill.js';
import { tempDir } from '../helpers/tmp.js';
import { rejectsWith } from '../helpers/lxr-errors.js';


const put = (key: string, value: unknown, expect?: number): StoreOp => ({ type: 'put', key, value, ...(expect === undefined ? {} : { expect }) });
const del = (key: string, expect?: number): StoreOp => ({ type: 'delete', key, ...(expect === undefined ? {} : { expect }) });

async function logStoreIn(prefix: string, compactAfter?: number): Promise<{ dir: string; store: LogStore }> {
  const dir = path.join(await tempDir(prefix), 'store');
  return { dir, store: await LogStore.open(dir, compactAfter === undefined ? {} : { compactAfter }) };
}

const backends: Array<{ name: string; open(): Promise<Store> }> = [
  { name: 'MemoryStore', open: async () => new MemoryStore() },
  { name: 'LogStore', open: async () => (await logStoreIn('store')).store },
];

const cyclic: Record<string, unknown> = {};
cyclic.self = cyclic;

const badInputs: Array<{ name: string; call(s: Store): Promise<unknown>; field: string; problem: RegExp }> = [
  { name: 'an empty key', call: (s) => s.commit([put('', 1)]), field: 'ops[0].key', problem: /non-empty/ },
  { name: 'a key with a newline', call: (s) => s.commit([put('a\nb', 1)]), field: 'ops[0].key', problem: /"a\\nb" contains a newline/ },
  { name: 'a function', call: (s) => s.commit([put('k', () => 1)]), field: 'ops[0].value', problem: /"k" is not JSON data: it is a function/ },
  { name: 'a nested bigint', call: (s) => s.commit([put('k', { n: 1n })]), field: 'ops[0].value', problem: /property "n" is a bigint/ },
  { name: 'NaN', call: (s) => s.commit([put('k', [1, NaN])]), field: 'ops[0].value', problem: /element 1 is NaN/ },
  { name: 'undefined', call: (s) => s.commit([put('k', undefined)]), field: 'ops[0].value', problem: /it is undefined/ },
  { name: 'a cycle', call: (s) => s.commit([put('k', cyclic)]), field: 'ops[0].value', problem: /circular/ },
  { name: 'a Map', call: (s) => s.commit([put('k', { m: new Map([[1, 2]]) })]), field: 'ops[0].value', problem: /property "m" is a Map, not plain data/ },
  { name: 'no ops', call: (s) => s.commit([]), field: 'ops', problem: /at least one op/ },
  { name: 'a bad expect', call: (s) => s.commit([put('k', 1, -1)]), field: 'ops[0].expect', problem: /-1 is not a revision/ },
  { name: 'an unknown op', call: (s) => s.commit([{ type: 'patch', key: 'k' } as unknown as StoreOp]), field: 'ops[0].type', problem: /"patch" is neither/ },
  { name: 'a key twice in a commit', call: (s) => s.commit([put('k', 1), del('k')]), field: 'ops[1].key', problem: /"k" appears twice/ },
  { name: 'get of an empty key', call: (s) => s.get(''), field: 'key', problem: /non-empty/ },
  { name: 'list of a prefix with a newline', call: (s) => s.list('a\n'), field: 'prefix', problem: /newline/ },
];

const semantics: Array<{ name: string; run(s: Store): Promise<void> }> = [
  {
    name: 'put, get, and list by prefix sorted by key',
    async run(s) {
      await s.commit([put('hosts/n2', { n: 2 }), put('workspaces/w1', { w: 1 }), put('hosts/n10', { n: 10 }), put('hostsX', 0), put('hosts/n1', { n: 1 })]);
      assert.deepEqual((await s.get('hosts/n1'))?.value, { n: 1 });
      assert.equal(await s.get('hosts/n3'), undefined);
      assert.deepEqual((await s.list('hosts/')).map((r) => r.key), ['hosts/n1', 'hosts/n10', 'hosts/n2']);
      assert.deepEqual((await s.list('')).map((r) => r.key), ['hosts/n1', 'hosts/n10', 'hosts/n2', 'hostsX', 'workspaces/w1']);
      assert.deepEqual(await s.list('nothing/'), []);
    },
  },
  {
    name: 'each commit is the next revision, shared by all its ops; a record keeps the revision of its last change',
    async run(s) {
      assert.equal(s.revision, 0);
      assert.equal(await s.commit([put('a', 1), put('b', 1)]), 1);
      assert.equal(await s.commit([put('b', 2)]), 2);
      assert.equal(await s.commit([del('missing')]), 3); // a no-op delete is still a commit
      assert.equal(s.revision, 3);
      assert.deepEqual(await s.list(''), [
        { key: 'a', value: 1, revision: 1 },
        { key: 'b', value: 2, revision: 2 },
      ]);
    },
  },
  {
    name: 'expect 0 on an existing key: LXR_CONFLICT naming key and revisions, and nothing of the commit applied',
    async run(s) {
      await s.commit([put('hosts/n1', 'a')]);
      await rejectsWith(s.commit([put('hosts/n2', 'b'), put('hosts/n1', 'c', 0)]), 'LXR_CONFLICT', /"hosts\/n1": the commit expected revision 0, the key is at 1/, 'ops[1].expect');
      assert.equal(await s.get('hosts/n2'), undefined);
      assert.equal((await s.get('hosts/n1'))?.value, 'a');
      assert.equal(s.revision, 1);
    },
  },
  {
    name: 'expect on the current revision succeeds; a stale one or one on a missing key conflicts',
    async run(s) {
      const r1 = await s.commit([put('k', 1, 0)]);
      const r2 = await s.commit([put('k', 2, r1)]);
      await rejectsWith(s.commit([put('k', 3, r1)]), 'LXR_CONFLICT', /expected revision 1, the key is at 2/);
      await rejectsWith(s.commit([put('other', 3, r2)]), 'LXR_CONFLICT', /"other": the commit expected revision 2, the key is at 0 \(0: it does not exist\)/);
      assert.deepEqual(await s.get('k'), { key: 'k', value: 2, revision: r2 });
    },
  },
  {
    name: 'delete with expect: removes on a match, conflicts otherwise',
    async run(s) {
      const r = await s.commit([put('k', 1)]);
      await rejectsWith(s.commit([del('k', r + 5)]), 'LXR_CONFLICT', /expected revision 6, the key is at 1/);
      assert.ok(await s.get('k'));
      await s.commit([del('k', r)]);
      assert.equal(await s.get('k'), undefined);
      await rejectsWith(s.commit([del('k', r)]), 'LXR_CONFLICT', /the key is at 0/);
    },
  },
  {
    name: 'of two commits racing to create one key, exactly one wins',
    async run(s) {
      const got = await Promise.allSettled([s.commit([put('k', 'first', 0)]), s.commit([put('k', 'second', 0)])]);
      assert.deepEqual(got.map((g) => g.status), ['fulfilled', 'rejected']);
      assert.equal((got[1] as PromiseRejectedResult).reason.reason, 'LXR_CONFLICT');
      assert.equal((await s.get('k'))?.value, 'first');
    },
  },
  {
    name: 'values are copied in and out',
    async run(s) {
      const v = { list: [1, 2], nested: { a: 'x' } };
      await s.commit([put('k', v)]);
      v.list.push(3);
      const got = await s.get<typeof v>('k');
      assert.deepEqual(got?.value, { list: [1, 2], nested: { a: 'x' } });
      got!.value.nested.a = 'changed';
      (await s.list<typeof v>(''))[0]!.value.list.length = 0;
      assert.deepEqual((await s.get('k'))?.value, { list: [1, 2], nested: { a: 'x' } });
    },
  },
  {
    name: 'bad input is LXR_INVALID_ARGUMENT naming the field and the problem, and changes nothing',
    async run(s) {
      for (const b of badInputs) {
        await assert.rejects(b.call(s), (e: unknown) => {
          assert.ok(e instanceof LxrError, `${b.name}: not an LxrError: ${String(e)}`);
          assert.equal(e.reason, 'LXR_INVALID_ARGUMENT', `${b.name}: ${e.message}`);
          assert.equal(e.field, b.field, `${b.name}: ${e.message}`);
          assert.match(e.message, b.problem, b.name);
          return true;
        });
      }
      assert.equal(s.revision, 0);
      assert.deepEqual(await s.list(''), []);
    },
  },
  {
    name: 'after close every call is refused',
    async run(s) {
      await s.commit([put('k', 1)]);
      await s.close();
      await rejectsWith(s.get('k'), 'LXR_UNAVAILABLE', /closed/);
      await rejectsWith(s.list(''), 'LXR_UNAVAILABLE', /closed/);
      await rejectsWith(s.commit([put('k', 2)]), 'LXR_UNAVAILABLE', /closed/);
      assert.equal(s.revision, 1);
    },
  },
];

for (const b of backends) {
  describe(`${b.name} semantics`, () => {
    for (const c of semantics) {
      it(c.name, async () => {
        const s = await b.open();
        try {
          await c.run(s);
        } finally {
          await s.close();
        }
      });
    }
  });
}

/** The current journal of a store dir (there is exactly one). */
function journalOf(dir: string): string {
  const files = readdirSync(dir).filter((f) => /^journal\.\d+$/.test(f));
  assert.equal(files.length, 1, `journals in ${dir}: ${files.join(', ')}`);
  return path.join(dir, files[0]!);
}

describe('LogStore on disk', () => {
  it('a reopen gives the same records and revision', async () => {
    const { dir, store } = await logStoreIn('store');
    await store.commit([put('hosts/n1', { cpu: 4 }), put('workspaces/w1', { host: 'n1' })]);
    await store.commit([put('hosts/n1', { cpu: 8 }, 1)]);
    await store.commit([del('workspaces/w1')]);
    const before = await store.list('');
    await store.close();
    const again = await LogStore.open(dir);
    try {
      assert.equal(again.revision, 3);
      assert.deepEqual(await again.list(''), before);
      assert.equal(await again.commit([put('hosts/n1', { cpu: 2 }, 2)]), 4);
    } finally {
      await again.close();
    }
  });

  it('a torn last line (a crash mid-write) was never acknowledged: it is dropped and truncated away', async () => {
    const { dir, store } = await logStoreIn('store');
    await store.commit([put('a', 1)]);
    await store.commit([put('b', 2)]);
    await store.close();
    const file = journalOf(dir);
    const whole = readFileSync(file, 'utf8');
    appendFileSync(file, '{"rev":3,"ops":[{"type":"put","key":"c","val');
    const again = await LogStore.open(dir);
    try {
      assert.equal(again.revision, 2);
      assert.equal(await again.get('c'), undefined);
      assert.equal(readFileSync(file, 'utf8'), whole);
      assert.equal(await again.commit([put('c', 3)]), 3);
    } finally {
      await again.close();
    }
  });

  it('a bad complete line is refused, naming the file and the line', async () => {
    const { dir, store } = await logStoreIn('store');
    for (const k of ['a', 'b', 'c']) await store.commit([put(k, k)]);
    await store.close();
    const file = journalOf(dir);
    const lines = readFileSync(file, 'utf8').split('\n');
    const cases: Array<[string, string[], RegExp]> = [
      ['not JSON', [lines[0]!, 'garbage', lines[2]!], /line 2: not JSON/],
      ['a revision skipped', [lines[0]!, lines[2]!], /line 2: revision 3 does not follow 1/],
      ['an op without a key', [lines[0]!, '{"rev":2,"ops":[{"type":"put","value":1}]}'], /line 2: .*non-empty string/],
    ];
    for (const [name, content, problem] of cases) {
      writeFileSync(file, `${content.join('\n')}\n`);
      await assert.rejects(LogStore.open(dir), (e: unknown) => {
        assert.ok(e instanceof LxrError && e.reason === 'LXR_INTERNAL', `${name}: ${String(e)}`);
        assert.ok(e.message.includes(`store journal ${file}: `), `${name}: ${e.message}`);
        assert.match(e.message, problem, name);
        return true;
      });
    }
  });

  it('compacts into a snapshot, and a reopen after it gives the same store', async () => {
    const { dir, store } = await logStoreIn('store', 3);
    for (let i = 0; i < 10; i++) await store.commit([put(`k${i % 4}`, i)]);
    const before = await store.list('');
    await store.close();
    // Compactions after commits 3, 6 and 9: generation 3 holds commit 10.
    assert.deepEqual(readdirSync(dir).sort(), ['journal.3', 'snapshot.json']);
    assert.equal(readFileSync(path.join(dir, 'journal.3'), 'utf8').split('\n').length, 2);
    const again = await LogStore.open(dir, { compactAfter: 3 });
    try {
      assert.equal(again.revision, 10);
      assert.deepEqual(await again.list(''), before);
      assert.equal(await again.commit([put('k0', 'x', before[0]!.revision)]), 11);
    } finally {
      await again.close();
    }
  });

  it('a compaction cut short is finished at open: a temp snapshot or an old journal left behind changes nothing', async () => {
    const { dir, store } = await logStoreIn('store', 2);
    for (let i = 1; i <= 5; i++) await store.commit([put(`k${i}`, i)]);
    const before = await store.list('');
    await store.close();
    const gen = (JSON.parse(readFileSync(path.join(dir, 'snapshot.json'), 'utf8')) as { generation: number }).generation;
    // Cut short before the rename: a temp snapshot that never took over.
    writeFileSync(path.join(dir, 'snapshot.json.tmp'), '{"version":1,"revision":99,"rec');
    // Cut short after it: the old journal, now history, still there.
    writeFileSync(path.join(dir, `journal.${gen - 1}`), '{"rev":1,"ops":[{"type":"put","key":"stale","value":0}]}\n');
    // Cut short between starting the next journal and the rename: an empty one ahead.
    writeFileSync(path.join(dir, `journal.${gen + 1}`), '');
    const again = await LogStore.open(dir, { compactAfter: 2 });
    try {
      assert.equal(again.revision, 5);
      assert.deepEqual(await again.list(''), before);
      assert.deepEqual(readdirSync(dir).sort(), [`journal.${gen}`, 'snapshot.json']);
    } finally {
      await again.close();
    }
    // A journal ahead of the snapshot with lines in it means the snapshot was
    // replaced: refused rather than silently ignored.
    writeFileSync(path.join(dir, `journal.${gen + 1}`), '{"rev":6,"ops":[{"type":"delete","key":"k1"}]}\n');
    await rejectsWith(LogStore.open(dir), 'LXR_INTERNAL', new RegExp(`journal\\.${gen + 1} has lines but snapshot\\.json names generation ${gen}`));
  });

  it('group commit: 100 concurrent commits get 100 revisions from one fdatasync', async () => {
    const { dir, store } = await logStoreIn('store');
    try {
      const syncs = store.syncs;
      const revs = await Promise.all(Array.from({ length: 100 }, (_, i) => store.commit([put(`k/${String(i).padStart(3, '0')}`, i)])));
      assert.deepEqual(revs, Array.from({ length: 100 }, (_, i) => i + 1));
      assert.equal(store.syncs - syncs, 1, 'one fdatasync for the group');
    } finally {
      await store.close();
    }
    const again = await LogStore.open(dir);
    try {
      assert.deepEqual((await again.list('k/')).map((r) => [r.value, r.revision]), Array.from({ length: 100 }, (_, i) => [i, i + 1]));
    } finally {
      await again.close();
    }
  });

  it('a commit whose write fails is rejected and not applied', async () => {
    const { dir, store } = await logStoreIn('store');
    try {
      await store.commit([put('a', 1)]);
      // The journal is the one seam: make its next append fail as a full disk would.
      const journal = (store as unknown as { journal: Journal<object> }).journal;
      const append = journal.append;
      journal.append = () => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      };
      const failed = [store.commit([put('b', 2)]), store.commit([put('a', 3, 1)])];
      for (const p of failed) await rejectsWith(p, 'LXR_INTERNAL', /could not write a commit: ENOSPC/);
      journal.append = append;
      assert.equal(store.revision, 1);
      assert.equal(await store.get('b'), undefined);
      assert.equal((await store.get('a'))?.value, 1);
      assert.equal(await store.commit([put('a', 4, 1)]), 2);
    } finally {
      await store.close();
    }
    const again = await LogStore.open(dir);
    try {
      assert.deepEqual(await again.list(''), [{ key: 'a', value: 4, revision: 2 }]);
    } finally {
      await again.close();
    }
  });

  it('close writes the commits already made before closing', async () => {
    const { dir, store } = await logStoreIn('store');
    const pending = store.commit([put('a', 1)]);
    await store.close();
    assert.equal(await pending, 1);
    const again = await LogStore.open(dir);
    try {
      assert.equal((await again.get('a'))?.revision, 1);
    } finally {
      await again.close();
    }
  });

  it('a writer SIGKILLed at a random moment: every acknowledged commit is there, at consecutive revisions', async () => {
    const dir = path.join(await tempDir('store'), 'store');
    const mod = fileURLToPath(new URL('../../controller/store/index.js', import.meta.url));
    for (let run = 0; run < 5; run++) {
      // Four writers in a loop, so commits are grouped; a small compactAfter,
      // so kills also land in compactions. Each says (synchronously) "REV KEY"
      // once its commit was acknowledged.
      const script = `
        import { writeSync } from 'node:fs';
        import { LogStore } from ${JSON.stringify(mod)};
        const s = await LogStore.open(${JSON.stringify(dir)}, { compactAfter: 40 });
        await Promise.all([0, 1, 2, 3].map(async (w) => {
          for (let i = 0; ; i++) {
            const key = 'r${run}/w' + w + '/' + i;
            const rev = await s.commit([{ type: 'put', key, value: { w, i } }]);
            writeSync(1, rev + ' ' + key + '\\n');
          }
        }));`;
      const delay = 100 + Math.floor(Math.random() * 300);
      const out = await runUntilKilled(script, delay);
      const acked = [...out.matchAll(/^(\d+) (\S+)$/gm)].map((m) => ({ revision: Number(m[1]), key: m[2]! }));
      assert.ok(acked.length > 0, `run ${run}: nothing acknowledged in ${delay} ms`);
      const s = await LogStore.open(dir);
      try {
        for (const a of acked) assert.equal((await s.get(a.key))?.revision, a.revision, `run ${run} (kill after ${delay} ms): ${a.key} was acknowledged at revision ${a.revision}`);
        // Every commit made one new key: the records' revisions are exactly 1..revision.
        const revs = (await s.list('')).map((r) => r.revision).sort((x, y) => x - y);
        assert.deepEqual(revs, Array.from({ length: s.revision }, (_, i) => i + 1), `run ${run}: revisions not consecutive`);
      } finally {
        await s.close();
      }
    }
    assert.ok(!existsSync(path.join(dir, 'snapshot.json.tmp')));
  });
});
