// Images across hosts over the fake agent gateway: which hosts a request
// goes to (named, every Ready one, unknown and NotReady ones refused), pulls
// streaming every host's progress, list with unreachable hosts, remove,
// and imports spooled to a file that every host loads at once and that is
// always removed; a host that fails fails the call only once all are done,
// naming the host.
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fakeImage, FakeAgentGateway } from '../../controller/agents/fake-gateway.js';
import { HostRegistry } from '../../controller/hosts/host-registry.js';
import { ClusterImageService } from '../../controller/images/image-service.js';
import { MemoryStore } from '../../controller/store/index.js';
import { SubnetPool } from '../../controller/subnets/subnet-pool.js';
import type { ClusterPullImageResponse } from '../../proto/shared/controller-types.js';
import { LxrError, notFound } from '../../proto/shared/errors.js';
import { rejectsWith } from '../helpers/lxr-errors.js';
import { tempDir } from '../helpers/tmp.js';

const GRACE_MS = 15_000;
const IMG = 'registry.example/team/app:v1';
const ARCHIVE = 'an image archive, as the fake gateway knows it';

interface World {
  hosts: HostRegistry;
  gateway: FakeAgentGateway;
  images: ClusterImageService;
  spoolDir: string;
  /** Hosts not named in `beating` go NotReady. */
  pass(ms: number, beating: string[]): void;
}

async function world(names = ['n1', 'n2', 'n3']): Promise<World> {
  let t = Date.UTC(2024, 0, 1);
  const store = new MemoryStore();
  const hosts = new HostRegistry({ store, subnets: new SubnetPool('10.200.0.0/16', 24), graceMs: GRACE_MS, now: () => t });
  for (const [i, n] of names.entries()) {
    await hosts.register({ name: n, address: `198.18.0.${i + 1}:7070`, cpus: 4, memoryBytes: 1 << 30, architecture: 'amd64' });
    hosts.heartbeat(n, null);
  }
  const gateway = new FakeAgentGateway();
  const spoolDir = path.join(await tempDir('ctl-images'), 'imports');
  return {
    hosts,
    gateway,
    spoolDir,
    images: new ClusterImageService({ hosts, gateway, spoolDir }),
    pass(ms, beating) {
      t += ms;
      for (const n of beating) hosts.heartbeat(n, null);
      hosts.tick();
    },
  };
}

/** The client's stream: these chunks; `read` counts what was taken from it. */
function stream(chunks: Array<string | Buffer>, fail?: Error): AsyncIterable<Buffer> & { read: number } {
  const s = {
    read: 0,
    async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
      for (const c of chunks) {
        s.read++;
        yield Buffer.from(c);
      }
      if (fail) throw fail;
    },
  };
  return s;
}

const spooled = async (w: World): Promise<string[]> => readdir(w.spoolDir).catch(() => []);
const hostsOf = (w: World, op: Parameters<FakeAgentGateway['callsOf']>[0]): string[] => w.gateway.callsOf(op).map((c) => c.host).sort();
const ticks = async (n = 20): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
/** Waits (a few ms at a time, 5 s at most) for the fake to have recorded `n` calls of `op`: file I/O comes first. */
async function untilCalls(w: World, op: 'loadImage', n: number): Promise<void> {
  for (let t = 0; w.gateway.callsOf(op).length < n; t += 5) {
    if (t > 5000) throw new Error(`only ${w.gateway.callsOf(op).length} of ${n} ${op} calls`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('image requests: target hosts', () => {
  it('none named: every Ready host (cordoned ones too); named: exactly those, once each', async () => {
    const w = await world();
    await w.hosts.setCordoned('n2', true);
    assert.deepEqual(w.images.targets([]).map((t) => t.name), ['n1', 'n2', 'n3']);
    assert.deepEqual(w.images.targets(['n3', 'n1', 'n3']), [{ name: 'n3', address: '198.18.0.3:7070' }, { name: 'n1', address: '198.18.0.1:7070' }]);
    w.pass(GRACE_MS + 1, ['n1', 'n3']);
    assert.deepEqual(w.images.targets(undefined).map((t) => t.name), ['n1', 'n3']);
  });

  it('an unknown host is NOT_FOUND naming it, a NotReady one UNAVAILABLE naming it, an empty name INVALID_ARGUMENT', async () => {
    const w = await world();
    w.pass(GRACE_MS + 1, ['n1', 'n3']);
    assert.throws(() => w.images.targets(['n1', 'n9']), (e: LxrError) => e.reason === 'LXR_NOT_FOUND' && /host "n9" not found/.test(e.message) && e.field === 'hosts');
    assert.throws(() => w.images.targets(['n2']), (e: LxrError) => e.reason === 'LXR_UNAVAILABLE' && /host n2 is NotReady/.test(e.message));
    assert.throws(() => w.images.targets(['']), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && e.field === 'hosts');
  });

  it('none named and none Ready is UNAVAILABLE saying so; so is an empty cluster', async () => {
    const w = await world();
    w.pass(GRACE_MS + 1, []);
    assert.throws(() => w.images.targets([]), (e: LxrError) => e.reason === 'LXR_UNAVAILABLE' && e.message === 'no host is Ready (NotReady: n1, n2, n3)');
    const empty = await world([]);
    assert.throws(() => empty.images.targets([]), (e: LxrError) => e.reason === 'LXR_UNAVAILABLE' && e.message === 'no host has joined the cluster');
  });
});

describe('image pull across hosts', () => {
  it("streams every host's layer progress, then its image, last per host", async () => {
    const w = await world();
    w.gateway.publish(IMG, fakeImage(IMG), ['sha256:' + '1'.repeat(64), 'sha256:' + '2'.repeat(64)]);
    const events: ClusterPullImageResponse[] = [];
    await w.images.pull({ image: IMG }, (ev) => events.push(ev));
    assert.deepEqual(hostsOf(w, 'pull'), ['n1', 'n2', 'n3']);
    for (const h of ['n1', 'n2', 'n3']) {
      const mine = events.filter((e) => e.host === h);
      assert.equal(mine.filter((e) => e.progress).length, 4, `${h}: two events per layer`);
      assert.deepEqual(new Set(mine.filter((e) => e.progress).map((e) => e.progress!.digest)).size, 2);
      assert.equal(mine.at(-1)!.image?.names[0], IMG, `${h}: the image comes last`);
      assert.deepEqual(w.gateway.images(h).map((i) => i.names), [[IMG]]);
    }
  });

  it('pulls only on the named hosts', async () => {
    const w = await world();
    w.gateway.publish(IMG, fakeImage(IMG));
    await w.images.pull({ image: IMG, hosts: ['n2'] }, () => {});
    assert.deepEqual(hostsOf(w, 'pull'), ['n2']);
    assert.deepEqual(w.gateway.images('n1'), []);
  });

  it('a host that fails ends the pull with its status, "host NAME: ...", only after every other host finished', async () => {
    const w = await world();
    w.gateway.publish(IMG, fakeImage(IMG));
    w.gateway.failNext('pull', notFound('manifest', IMG), 'n2');
    const release = w.gateway.hold('pull', 'n3');
    const events: ClusterPullImageResponse[] = [];
    let settled = false;
    const p = w.images.pull({ image: IMG }, (ev) => events.push(ev)).finally(() => (settled = true));
    await ticks();
    assert.equal(settled, false, 'n3 is still pulling');
    release();
    await rejectsWith(p, 'LXR_NOT_FOUND', /^host n2: manifest "registry\.example\/team\/app:v1" not found \(done on n1, n3; failed on n2\)$/);
    assert.deepEqual(events.filter((e) => e.image).map((e) => e.host).sort(), ['n1', 'n3']);
  });

  it('an image missing everywhere fails with the first host, and says it failed on all', async () => {
    const w = await world(['n1', 'n2']);
    await rejectsWith(w.images.pull({ image: 'nope:v1' }, () => {}), 'LXR_NOT_FOUND', /^host n\d: manifest nope:v1 not found.*\(failed on n\d, n\d\)$/);
  });

  it('an unreachable host is UNAVAILABLE naming it', async () => {
    const w = await world();
    w.gateway.publish(IMG, fakeImage(IMG));
    w.gateway.down('n1');
    await rejectsWith(w.images.pull({ image: IMG }, () => {}), 'LXR_UNAVAILABLE', /^host n1: .*unreachable/);
    assert.equal(w.gateway.images('n2').length, 1);
  });

  it('bad requests are refused before any host is asked', async () => {
    const w = await world();
    await rejectsWith(w.images.pull({ image: '' }, () => {}), 'LXR_INVALID_ARGUMENT', /image: is required/, 'image');
    await rejectsWith(w.images.pull({ image: IMG, hosts: ['n9'] }, () => {}), 'LXR_NOT_FOUND', /host "n9" not found/, 'hosts');
    assert.deepEqual(w.gateway.callsOf('pull'), []);
  });
});

describe('image list and remove across hosts', () => {
  it('lists every Ready host\'s images with the host; a host that does not answer is listed unreachable with why', async () => {
    const w = await world();
    w.gateway.seedImage('n1', fakeImage('a:1'));
    w.gateway.seedImage('n3', fakeImage('b:1'));
    w.gateway.seedImage('n3', fakeImage('a:1'));
    w.gateway.down('n2');
    const r = await w.images.list();
    assert.deepEqual(r.images.map((i) => `${i.host} ${i.image!.names[0]}`), ['n1 a:1', 'n3 a:1', 'n3 b:1']);
    assert.equal(r.unreachable.length, 1);
    assert.match(r.unreachable[0]!, /^n2: .*unreachable/);
    assert.deepEqual((await w.images.list('n3')).images.map((i) => i.host), ['n3', 'n3']);
    assert.throws(() => w.images.targets(['n9'], 'host'), (e: LxrError) => e.field === 'host');
    await rejectsWith(w.images.list('n9'), 'LXR_NOT_FOUND', /host "n9"/, 'host');
  });

  it('removes the name on each host that has it; NOT_FOUND when none has it', async () => {
    const w = await world();
    w.gateway.seedImage('n1', fakeImage(IMG));
    w.gateway.seedImage('n3', fakeImage(IMG));
    const removed = await w.images.remove({ image: IMG });
    assert.deepEqual(removed.map((r) => [r.host, r.untagged, r.deleted]), [['n1', [IMG], fakeImage(IMG).digest], ['n3', [IMG], fakeImage(IMG).digest]]);
    assert.deepEqual(hostsOf(w, 'removeImage'), ['n1', 'n2', 'n3']);
    await rejectsWith(w.images.remove({ image: IMG }), 'LXR_NOT_FOUND', /image "registry\.example\/team\/app:v1" not found on any of the hosts n1, n2, n3/, 'image');
    w.gateway.seedImage('n2', fakeImage(IMG));
    await rejectsWith(w.images.remove({ image: IMG, hosts: ['n1'] }), 'LXR_NOT_FOUND', /not found on host n1$/);
    assert.equal(w.gateway.images('n2').length, 1);
    await rejectsWith(w.images.remove({ image: '' }), 'LXR_INVALID_ARGUMENT', /image/, 'image');
  });

  it('a host that fails a remove fails it naming the host, after the others removed theirs', async () => {
    const w = await world();
    for (const h of ['n1', 'n2', 'n3']) w.gateway.seedImage(h, fakeImage(IMG));
    w.gateway.failNext('removeImage', new LxrError('LXR_INTERNAL', 'disk on fire'), 'n2');
    await rejectsWith(w.images.remove({ image: IMG }), 'LXR_INTERNAL', /^host n2: disk on fire \(done on n1, n3; failed on n2\)$/);
    assert.deepEqual(['n1', 'n2', 'n3'].map((h) => w.gateway.images(h).length), [0, 1, 0]);
  });
});

describe('image import across hosts', () => {
  it('spools the stream to one file that every Ready host loads at once, then removes it', async () => {
    const w = await world();
    w.gateway.archive(ARCHIVE, [fakeImage(IMG)]);
    const release = w.gateway.hold('loadImage');
    const p = w.images.import({ repository: 'team/app' }, stream([ARCHIVE.slice(0, 10), '', ARCHIVE.slice(10)]));
    // Every host is loading before any has finished, all from the one spooled file.
    await untilCalls(w, 'loadImage', 3);
    const calls = w.gateway.callsOf('loadImage');
    assert.deepEqual(calls.map((c) => c.host).sort(), ['n1', 'n2', 'n3']);
    assert.equal(new Set(calls.map((c) => c.file)).size, 1);
    assert.equal(path.dirname(calls[0]!.file!), w.spoolDir);
    assert.deepEqual(await spooled(w), [path.basename(calls[0]!.file!)]);
    for (const c of calls) {
      assert.equal(c.repository, 'team/app');
      assert.equal(c.bytes, Buffer.byteLength(ARCHIVE));
    }
    release();
    const out = await p;
    assert.deepEqual(out.map((h) => [h.host, h.images.map((i) => i.names[0])]), [['n1', [IMG]], ['n2', [IMG]], ['n3', [IMG]]]);
    assert.deepEqual(await spooled(w), []);
  });

  it('onto the named host only', async () => {
    const w = await world();
    w.gateway.archive(ARCHIVE, [fakeImage(IMG)]);
    const out = await w.images.import({ hosts: ['n2'] }, stream([ARCHIVE]));
    assert.deepEqual(out.map((h) => h.host), ['n2']);
    assert.deepEqual(hostsOf(w, 'loadImage'), ['n2']);
    assert.deepEqual(w.gateway.images('n1'), []);
    assert.deepEqual(await spooled(w), []);
  });

  it('an unknown or NotReady host is refused before a byte of the stream is read', async () => {
    const w = await world();
    w.pass(GRACE_MS + 1, ['n1', 'n2']);
    const s1 = stream([ARCHIVE]);
    await rejectsWith(w.images.import({ hosts: ['n1', 'n9'] }, s1), 'LXR_NOT_FOUND', /host "n9" not found/, 'header.hosts');
    const s2 = stream([ARCHIVE]);
    await rejectsWith(w.images.import({ hosts: ['n3'] }, s2), 'LXR_UNAVAILABLE', /host n3 is NotReady/);
    assert.equal(s1.read + s2.read, 0);
    assert.deepEqual(w.gateway.callsOf('loadImage'), []);
    assert.deepEqual(await spooled(w), []);
  });

  it('an empty archive is INVALID_ARGUMENT naming data, and no host is asked', async () => {
    const w = await world();
    await rejectsWith(w.images.import({}, stream([])), 'LXR_INVALID_ARGUMENT', /data: no archive was sent/, 'data');
    await rejectsWith(w.images.import({}, stream(['', ''])), 'LXR_INVALID_ARGUMENT', /no archive/, 'data');
    assert.deepEqual(w.gateway.callsOf('loadImage'), []);
    assert.deepEqual(await spooled(w), []);
  });

  it('an archive the hosts refuse fails naming the first host, and leaves no file', async () => {
    const w = await world(['n1']);
    await rejectsWith(w.images.import({}, stream(['garbage'])), 'LXR_INVALID_ARGUMENT', /^host n1: invalid argument data: the archive is neither/, 'data');
    assert.deepEqual(await spooled(w), []);
  });

  it('a host that fails a load fails the import naming it once the others have loaded', async () => {
    const w = await world();
    w.gateway.archive(ARCHIVE, [fakeImage(IMG)]);
    w.gateway.down('n2');
    await rejectsWith(w.images.import({}, stream([ARCHIVE])), 'LXR_UNAVAILABLE', /^host n2: .*unreachable.*\(done on n1, n3; failed on n2\)$/);
    assert.deepEqual(['n1', 'n2', 'n3'].map((h) => w.gateway.images(h).length), [1, 0, 1]);
    assert.deepEqual(await spooled(w), []);
  });

  it('a client stream that breaks off leaves no file and loads nothing', async () => {
    const w = await world();
    await rejectsWith(w.images.import({}, stream(['part of it'], new LxrError('LXR_UNAVAILABLE', 'client went away'))), 'LXR_UNAVAILABLE', /client went away/);
    assert.deepEqual(w.gateway.callsOf('loadImage'), []);
    assert.deepEqual(await spooled(w), []);
  });

  it('a cancelled import stops the loads and removes the file', async () => {
    const w = await world(['n1']);
    w.gateway.archive(ARCHIVE, [fakeImage(IMG)]);
    const release = w.gateway.hold('loadImage');
    const ac = new AbortController();
    const p = w.images.import({}, stream([ARCHIVE]), ac.signal);
    await untilCalls(w, 'loadImage', 1);
    assert.equal((await spooled(w)).length, 1);
    ac.abort();
    release();
    await rejectsWith(p, 'LXR_UNAVAILABLE', /^host n1: load cancelled/);
    assert.deepEqual(await spooled(w), []);
  });

  it('files a crashed controller left in the spool dir are removed by the next import', async () => {
    const w = await world(['n1']);
    w.gateway.archive(ARCHIVE, [fakeImage(IMG)]);
    await w.images.import({}, stream([ARCHIVE]));
    await writeFile(path.join(w.spoolDir, 'import-0123456789abcdef.tar'), 'left over');
    await w.images.import({}, stream([ARCHIVE]));
    assert.deepEqual(await spooled(w), []);
  });
});
