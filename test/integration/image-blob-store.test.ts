// The blob store on a real filesystem: verified ingest, nothing partial or
// corrupt ever lands, shared concurrent downloads, cancellation, and
// detection of blobs tampered with on disk.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { BlobStore } from '../../agent/image/blob-store.js';
import { digestOf } from '../../agent/image/digest.js';
import { tempDir } from '../helpers/tmp.js';

const data = randomBytes(300_000);
const digest = digestOf(data);

/** A source that yields `buf` in 16 KiB chunks, counting its calls. */
function counted(buf: Buffer): { source: () => Readable; calls: number } {
  const s = {
    calls: 0,
    source: () => {
      s.calls++;
      return Readable.from(chunks(buf, 16 * 1024));
    },
  };
  return s;
}

function* chunks(buf: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function newStore(): Promise<BlobStore> {
  return new BlobStore(await tempDir('blobs'));
}

/** Nothing under ingest/ and (unless given) nothing under blobs/. */
async function assertClean(store: BlobStore, landed: string[] = []): Promise<void> {
  const ingest = await readdir(join(store.root, 'ingest')).catch(() => []);
  assert.deepEqual(ingest, [], 'partial files left behind');
  assert.deepEqual(
    (await store.list()).map((b) => b.digest),
    [...landed].sort(),
  );
}

function lxr(reason: string, field: string | undefined, message: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
    assert.equal(e.reason, reason);
    assert.equal(e.field, field);
    assert.match(e.message, message);
    return true;
  };
}

describe('BlobStore.ingest', () => {
  it('stores a verified blob at blobs/sha256/<hex>, read-only', async () => {
    const store = await newStore();
    const progress: Array<[number, number | undefined]> = [];
    const res = await store.ingest(digest, data.length, counted(data).source, { onProgress: (d, t) => progress.push([d, t]) });
    assert.deepEqual(res, { digest, size: data.length, existed: false });
    const file = join(store.root, 'blobs', 'sha256', digest.slice('sha256:'.length));
    assert.equal(store.path(digest), file);
    assert.ok((await readFile(file)).equals(data));
    assert.equal((await stat(file)).mode & 0o777, 0o444);
    assert.equal(await store.has(digest), true);
    assert.equal(await store.size(digest), data.length);
    assert.deepEqual(progress.at(-1), [data.length, data.length]);
    assert.ok(progress.length > 1, 'progress reported per chunk');
    await assertClean(store, [digest]);
  });

  it('accepts an unknown size, an empty blob and sha512', async () => {
    const store = await newStore();
    assert.equal((await store.ingest(digest, undefined, counted(data).source)).size, data.length);
    const empty = digestOf('');
    assert.equal((await store.ingest(empty, 0, () => Readable.from([]))).size, 0);
    const d512 = digestOf(data, 'sha512');
    await store.ingest(d512, data.length, counted(data).source);
    assert.equal(store.path(d512), join(store.root, 'blobs', 'sha512', d512.slice('sha512:'.length)));
    await assertClean(store, [digest, empty, d512]);
  });

  it('returns existed without calling the source when the blob is present', async () => {
    const store = await newStore();
    await store.ingest(digest, data.length, counted(data).source);
    const again = counted(data);
    assert.deepEqual(await store.ingest(digest, data.length, again.source), { digest, size: data.length, existed: true });
    assert.deepEqual(await store.ingest(digest, undefined, again.source), { digest, size: data.length, existed: true });
    assert.equal(again.calls, 0);
    // The blob is right but the caller's descriptor is not.
    await assert.rejects(store.ingest(digest, data.length + 1, again.source), lxr('LXR_INVALID_ARGUMENT', 'size', /size mismatch/));
  });

  it('refuses content with the wrong digest: nothing lands, no partial file', async () => {
    const store = await newStore();
    const other = randomBytes(data.length);
    await assert.rejects(store.ingest(digest, data.length, counted(other).source), lxr('LXR_INVALID_ARGUMENT', 'digest', new RegExp(`digest mismatch: expected ${digest}, got ${digestOf(other)}`)));
    assert.equal(await store.has(digest), false);
    await assertClean(store);
  });

  it('refuses truncated content', async () => {
    const store = await newStore();
    await assert.rejects(store.ingest(digest, data.length, counted(data.subarray(0, 1000)).source), lxr('LXR_INVALID_ARGUMENT', 'size', /expected 300000 bytes, got 1000/));
    // Without a size to check, truncation is still a digest mismatch.
    await assert.rejects(store.ingest(digest, undefined, counted(data.subarray(0, 1000)).source), lxr('LXR_INVALID_ARGUMENT', 'digest', /digest mismatch/));
    await assertClean(store);
  });

  it('refuses too-long content early', async () => {
    const store = await newStore();
    let produced = 0;
    const endless = (): Readable =>
      Readable.from(
        (function* () {
          for (;;) {
            produced++;
            yield Buffer.alloc(64 * 1024);
          }
        })(),
      );
    await assert.rejects(store.ingest(digest, data.length, endless), lxr('LXR_INVALID_ARGUMENT', 'size', /more than that/));
    assert.ok(produced < 64, `read ${produced} chunks of an endless source`);
    await assertClean(store);
  });

  it('turns a failing source into UNAVAILABLE and cleans up', async () => {
    const store = await newStore();
    const failing = (): Readable =>
      Readable.from(
        (async function* () {
          yield data.subarray(0, 1000);
          throw Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
        })(),
      );
    await assert.rejects(store.ingest(digest, data.length, failing), lxr('LXR_UNAVAILABLE', undefined, /fetching blob .* failed: connection reset/));
    await assert.rejects(
      store.ingest(digest, data.length, async () => {
        throw new Error('401 unauthorized');
      }),
      lxr('LXR_UNAVAILABLE', undefined, /401 unauthorized/),
    );
    await assertClean(store);
  });

  it('rejects malformed digests and sizes before calling the source', async () => {
    const store = await newStore();
    const s = counted(data);
    await assert.rejects(store.ingest('sha256:abc', 3, s.source), lxr('LXR_INVALID_ARGUMENT', 'digest', /64 characters/));
    await assert.rejects(store.ingest(digest, -5, s.source), lxr('LXR_INVALID_ARGUMENT', 'size', /non-negative/));
    assert.throws(() => store.path('../../etc/passwd'), lxr('LXR_INVALID_ARGUMENT', 'digest', /missing ':'/));
    assert.equal(s.calls, 0);
  });

  it('shares one download between concurrent ingests of a digest', async () => {
    const store = await newStore();
    const first = counted(data);
    const second = counted(data);
    const seen: number[] = [];
    const [a, b, c] = await Promise.all([
      store.ingest(digest, data.length, first.source),
      store.ingest(digest, data.length, second.source, { onProgress: (d) => seen.push(d) }),
      store.ingest(digest, undefined, second.source),
    ]);
    assert.equal(first.calls, 1);
    assert.equal(second.calls, 0);
    assert.deepEqual(a, { digest, size: data.length, existed: false });
    assert.deepEqual(b, a);
    assert.deepEqual(c, a);
    assert.equal(seen.at(-1), data.length, 'a joiner gets progress too');
    await assertClean(store, [digest]);
  });

  it('shares a failure too, and the next ingest starts afresh', async () => {
    const store = await newStore();
    const bad = counted(randomBytes(data.length));
    const other = counted(data);
    const results = await Promise.allSettled([store.ingest(digest, data.length, bad.source), store.ingest(digest, data.length, other.source)]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    assert.equal(bad.calls + other.calls, 1);
    assert.equal((await store.ingest(digest, data.length, other.source)).existed, false);
    assert.equal(other.calls, 1);
    await assertClean(store, [digest]);
  });

  it('cancels mid-stream: UNAVAILABLE "pull cancelled", no partial file', async () => {
    const store = await newStore();
    const ac = new AbortController();
    let sourceSignal: AbortSignal | undefined;
    const slow = (signal: AbortSignal): Readable => {
      sourceSignal = signal;
      return Readable.from(
        (async function* () {
          for (const c of chunks(data, 1000)) {
            await new Promise((r) => setTimeout(r, 1));
            yield c;
          }
        })(),
      );
    };
    const p = store.ingest(digest, data.length, slow, {
      signal: ac.signal,
      onProgress: (done) => {
        if (done >= 5000) ac.abort();
      },
    });
    await assert.rejects(p, lxr('LXR_UNAVAILABLE', undefined, /^pull cancelled$/));
    assert.equal(sourceSignal?.aborted, true, 'the source is told to stop');
    // The flight settles (and removes its partial) just after the caller is released.
    for (let i = 0; i < 100 && (await readdir(join(store.root, 'ingest'))).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    await assertClean(store);
  });

  it('refuses an already-aborted signal without calling the source', async () => {
    const store = await newStore();
    const s = counted(data);
    await assert.rejects(store.ingest(digest, data.length, s.source, { signal: AbortSignal.abort() }), lxr('LXR_UNAVAILABLE', undefined, /pull cancelled/));
    assert.equal(s.calls, 0);
  });

  it('lets two processes race on one digest: both succeed, one intact blob lands', async () => {
    const store = await newStore();
    const payload = join(await tempDir('payload'), 'blob');
    await writeFile(payload, data);
    const module = fileURLToPath(new URL('../../agent/image/blob-store.js', import.meta.url));
    // Each child feeds the file slowly so the two downloads overlap.
    const script = `
      import { BlobStore } from ${JSON.stringify(module)};
      import { readFileSync } from 'node:fs';
      import { Readable } from 'node:stream';
      const [root, payload, digest] = process.argv.slice(1);
      const buf = readFileSync(payload);
      const src = () => Readable.from((async function* () {
        for (let i = 0; i < buf.length; i += 20000) { await new Promise((r) => setTimeout(r, 2)); yield buf.subarray(i, i + 20000); }
      })());
      const res = await new BlobStore(root).ingest(digest, buf.length, src);
      process.stdout.write(JSON.stringify(res));
    `;
    const run = () => promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, store.root, payload, digest]);
    const results = await Promise.all([run(), run()]);
    for (const r of results) assert.equal(JSON.parse(r.stdout).size, data.length);
    assert.deepEqual(await store.verify(digest), { digest, size: data.length });
    await assertClean(store, [digest]);
  });

  it('keeps a shared download going while another caller still waits', async () => {
    const store = await newStore();
    const ac = new AbortController();
    const slow = (): Readable =>
      Readable.from(
        (async function* () {
          for (const c of chunks(data, 10_000)) {
            await new Promise((r) => setTimeout(r, 1));
            yield c;
          }
        })(),
      );
    const quitter = store.ingest(digest, data.length, slow, { signal: ac.signal });
    const stayer = store.ingest(digest, data.length, slow);
    setTimeout(() => ac.abort(), 5);
    await assert.rejects(quitter, lxr('LXR_UNAVAILABLE', undefined, /pull cancelled/));
    assert.deepEqual(await stayer, { digest, size: data.length, existed: false });
    await assertClean(store, [digest]);
  });
});

describe('BlobStore: reading, listing, deleting, verifying', () => {
  it('opens, lists and deletes blobs', async () => {
    const store = await newStore();
    const small = Buffer.from('{"a":1}');
    const d2 = digestOf(small);
    await store.ingest(digest, data.length, counted(data).source);
    await store.ingest(d2, small.length, () => Readable.from([small]));
    const expected = [
      { digest, size: data.length },
      { digest: d2, size: small.length },
    ].sort((x, y) => (x.digest < y.digest ? -1 : 1));
    assert.deepEqual(await store.list(), expected);

    const read: Buffer[] = [];
    for await (const c of await store.open(digest)) read.push(c as Buffer);
    assert.ok(Buffer.concat(read).equals(data));

    assert.equal(await store.delete(digest), true);
    assert.equal(await store.delete(digest), false);
    assert.equal(await store.has(digest), false);
    assert.deepEqual(await store.list(), [{ digest: d2, size: small.length }]);
    await assert.rejects(store.open(digest), lxr('LXR_NOT_FOUND', undefined, /blob "sha256:.*" not found/));
    await assert.rejects(store.size(digest), lxr('LXR_NOT_FOUND', undefined, /not found/));
  });

  it('list skips stray files and is empty for a fresh root', async () => {
    const store = await newStore();
    assert.deepEqual(await store.list(), []);
    await mkdir(join(store.root, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(store.root, 'blobs', 'sha256', 'not-a-digest'), 'x');
    assert.deepEqual(await store.list(), []);
  });

  it('readJson parses small blobs and enforces the size cap', async () => {
    const store = new BlobStore(await tempDir('blobs'), { jsonLimit: 64 });
    const doc = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
    const buf = Buffer.from(JSON.stringify(doc));
    const d = digestOf(buf);
    await store.ingest(d, buf.length, () => Readable.from([buf]));
    assert.deepEqual(await store.readJson(d, 1024), doc);
    await assert.rejects(store.readJson(d), lxr('LXR_INVALID_ARGUMENT', 'digest', /over the 64-byte limit/));
    const text = Buffer.from('not json');
    const dt = digestOf(text);
    await store.ingest(dt, text.length, () => Readable.from([text]));
    await assert.rejects(store.readJson(dt), lxr('LXR_INVALID_ARGUMENT', 'digest', /not valid JSON/));
  });

  it('verify detects a blob tampered with on disk (and open/readJson do too)', async () => {
    const store = await newStore();
    const buf = Buffer.from(JSON.stringify({ config: { Env: ['A=1'] } }));
    const d = digestOf(buf);
    await store.ingest(digest, data.length, counted(data).source);
    await store.ingest(d, buf.length, () => Readable.from([buf]));
    assert.deepEqual(await store.verify(digest), { digest, size: data.length });

    const file = store.path(digest);
    const tampered = Buffer.from(data);
    tampered.writeUInt8(tampered.readUInt8(100) ^ 0xff, 100);
    await chmod(file, 0o644);
    await writeFile(file, tampered);
    await assert.rejects(store.verify(digest), lxr('LXR_INTERNAL', 'digest', new RegExp(`corrupt on disk: its content hashes to ${digestOf(tampered)}`)));
    await assert.rejects(
      (async () => {
        for await (const _ of await store.open(digest, { verify: true }));
      })(),
      lxr('LXR_INVALID_ARGUMENT', 'digest', /digest mismatch/),
    );

    await chmod(store.path(d), 0o644);
    await writeFile(store.path(d), JSON.stringify({ config: { Env: ['A=2'] } }));
    await assert.rejects(store.readJson(d), lxr('LXR_INTERNAL', 'digest', /corrupt on disk/));
  });

  it('removeStalePartials removes partials of dead processes only', async () => {
    const store = await newStore();
    const dir = join(store.root, 'ingest');
    await mkdir(dir, { recursive: true });
    const hex = digest.slice('sha256:'.length);
    // pid 2^22+1 is above the kernel's pid_max ceiling: never a live process.
    const dead = `sha256-${hex}.4194305.0011aabb.partial`;
    const live = `sha256-${hex}.${process.ppid}.0011aabb.partial`;
    await writeFile(join(dir, dead), 'x');
    await writeFile(join(dir, live), 'x');
    await writeFile(join(dir, 'unrelated'), 'x');
    assert.equal(await store.removeStalePartials(), 1);
    assert.deepEqual((await readdir(dir)).sort(), [live, 'unrelated'].sort());
  });
});
