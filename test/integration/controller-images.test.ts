// Images through the controller in a three-host lab: an OCI-layout tar
// streamed to the controller lands on every host (or on the one named) and
// a workspace runs from it; remove on one host; a pull of an image the lab's
// registry does not have ends NOT_FOUND naming the host, and a pull of one
// pushed there streams every host's per-layer progress; a workspace whose
// image does not exist is Failed with reasonCode LXR_NOT_FOUND; a big upload
// keeps the controller's and the agent's memory bounded; bad requests and
// cancelled uploads are refused clearly and leave no spooled archive in the
// controller's root or the agents'.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { hostPlatform } from '../../agent/image/registry/platform.js';
import { labDown, labUp, REGISTRY_PORT, SWITCH_ADDRESS, type LabState } from '../../cli/lab/lab.js';
import { CLIENT_OPTIONS, ClusterImagesClient, ImagesClient, unary, WorkspacesClient, type ClusterImportImageResponse, type ClusterPullImageResponse, type ImportImageHeader, type Workspace } from '../../proto/shared/api.js';
import { agentTestSkip, busyboxImage, collect, grpcErr, tarDir } from '../helpers/agent.js';
import { rssBytes } from '../helpers/exec-stream.js';
import { ociImageOf, tarOf, writeOciLayout } from '../helpers/oci-image.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const REGISTRY = `${SWITCH_ADDRESS}:${REGISTRY_PORT}`;
const IMPORTED = 'lab.example/lxr/busybox:imported';
const ONLY_N2 = 'lab.example/lxr/busybox:only-n2';
const PULLED = `${REGISTRY}/lxr/pulled:v1`;
const HOSTS = ['n1', 'n2', 'n3'];

/**
 * Pushes the image of an OCI layout to the lab's registry over plain HTTP,
 * from inside the lab's switch namespace (the only place its address is
 * reachable from): a node process entered there with nsenter.
 */
const PUSH_SCRIPT = `
import { readFile } from 'node:fs/promises';
const { LAYOUT, REGISTRY, REPO, TAG } = process.env;
const blob = (d) => readFile(LAYOUT + '/blobs/sha256/' + d.slice(7));
const top = JSON.parse(await readFile(LAYOUT + '/index.json', 'utf8')).manifests[0];
const manifest = JSON.parse(await blob(top.digest));
for (const d of [manifest.config, ...manifest.layers]) {
  const start = await fetch('http://' + REGISTRY + '/v2/' + REPO + '/blobs/uploads/', { method: 'POST' });
  if (start.status !== 202) throw new Error('upload start: HTTP ' + start.status + ' ' + await start.text());
  const url = new URL(start.headers.get('location'), 'http://' + REGISTRY);
  url.searchParams.set('digest', d.digest);
  const put = await fetch(url, { method: 'PUT', body: await blob(d.digest), headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error('blob ' + d.digest + ': HTTP ' + put.status + ' ' + await put.text());
}
const m = await fetch('http://' + REGISTRY + '/v2/' + REPO + '/manifests/' + TAG, { method: 'PUT', body: await blob(top.digest), headers: { 'content-type': top.mediaType } });
if (m.status !== 201) throw new Error('manifest: HTTP ' + m.status + ' ' + await m.text());
`;

describe('images through the controller in a three-host lab', { skip: agentTestSkip, timeout: 900_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let images: ClusterImagesClient;
  let ws: WorkspacesClient;
  /** The busybox image as an OCI layout, tarred, naming IMPORTED (and ONLY_N2). */
  let archive: Buffer;
  let archiveOnlyN2: Buffer;

  /** What an import or load left behind: the controller's spool dir and every agent's load dir. */
  const leftovers = async (): Promise<string[]> => {
    const dirs = [path.join(dir, 'controller', 'state', 'imports'), ...lab.hosts.map((h) => path.join(h.root, 'state', 'images', 'load'))];
    const out: string[] = [];
    for (const d of dirs) for (const n of await readdir(d).catch(() => [])) out.push(path.join(d, n));
    return out;
  };
  const until = async <T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 30_000): Promise<T> => {
    for (let t = 0; ; t += 100) {
      const v = await f().catch(() => null);
      if (v) return v;
      if (t > ms) throw new Error(`timed out waiting for ${what}`);
      await sleep(100);
    }
  };

  /** Streams `data` to Images.Import in chunks (header in the first message), with backpressure. */
  const importArchive = (data: Buffer, header: ImportImageHeader | null = {}, o: { chunk?: number; headerAgain?: boolean; noMessages?: boolean } = {}): Promise<ClusterImportImageResponse> =>
    new Promise((resolve, reject) => {
      let ended = false;
      const call = images.Import(new grpc.Metadata(), { deadline: Date.now() + 300_000 }, (err, res) => {
        ended = true;
        if (err) reject(err);
        else resolve(res!);
      });
      void (async () => {
        if (!o.noMessages) {
          const chunk = o.chunk ?? 256 << 10;
          for (let off = 0, i = 0; off < data.length || i === 0; off += chunk, i++) {
            const head = (i === 0 && header) || (i === 1 && o.headerAgain) ? { header: header ?? {} } : {};
            if (!call.write({ ...head, data: data.subarray(off, off + chunk) })) {
              await new Promise<void>((r) => {
                const go = (): void => {
                  call.off('drain', go);
                  call.off('status', go);
                  r();
                };
                call.on('drain', go);
                call.on('status', go);
              });
            }
            if (ended) return;
          }
        }
        call.end();
      })().catch(reject);
    });

  const list = async (host = ''): Promise<Map<string, string[]>> => {
    const r = await unary(images, images.List, { host });
    assert.deepEqual(r.unreachable, []);
    const by = new Map<string, string[]>();
    for (const i of r.images) by.set(i.host, [...(by.get(i.host) ?? []), ...i.image!.names].sort());
    return by;
  };
  const hostsWith = async (name: string): Promise<string[]> => [...(await list()).entries()].filter(([, names]) => names.includes(name)).map(([h]) => h).sort();
  const createWs = async (name: string, image: string, extra: object = {}): Promise<Workspace> =>
    (await unary(ws, ws.Create, { spec: { name, image, command: ['sleep', '3600'], ...extra }, wait: true }, { deadline: Date.now() + 180_000 })).workspace!;
  const removeWs = (name: string) => unary(ws, ws.Delete, { name }).catch(() => {});

  before(async () => {
    work = await ownedTempDir('ctlimg');
    dir = path.join(work, 'lab');
    lab = await labUp({ name: uniqueId('i').toLowerCase().slice(0, 20), dir, hosts: 3, controller: true });
    const addr = `unix://${lab.controller!.socket}`;
    images = new ClusterImagesClient(addr, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
    ws = new WorkspacesClient(addr, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
    const bb = await busyboxImage(path.join(work, 'bb'));
    await writeOciLayout(path.join(work, 'layout'), bb, IMPORTED);
    archive = await tarDir(path.join(work, 'layout'));
    await writeOciLayout(path.join(work, 'layout-n2'), bb, ONLY_N2);
    archiveOnlyN2 = await tarDir(path.join(work, 'layout-n2'));
  });

  after(async () => {
    images?.close();
    ws?.close();
    if (dir) {
      const problems = await labDown(dir);
      assert.deepEqual(problems, []);
    }
    if (work) await run('rm', ['-rf', work]);
  });

  test('an OCI-layout tar imported through the controller lands on every host; with a host named, on that host only', async () => {
    const all = await importArchive(archive);
    assert.deepEqual(all.imported.map((h) => [h.host, h.images.map((i) => i.names)]), HOSTS.map((h) => [h, [[IMPORTED]]]));
    const digest = all.imported[0]!.images[0]!.digest;
    for (const h of all.imported) assert.equal(h.images[0]!.digest, digest);
    assert.deepEqual(await hostsWith(IMPORTED), HOSTS);
    // Small chunks: many messages, each written before the next is read.
    const one = await importArchive(archiveOnlyN2, { hosts: ['n2'] }, { chunk: 16 << 10 });
    assert.deepEqual(one.imported.map((h) => h.host), ['n2']);
    assert.deepEqual(await hostsWith(ONLY_N2), ['n2']);
    assert.deepEqual([...(await list('n2')).keys()], ['n2']);
    assert.deepEqual(await leftovers(), []);
  });

  test('a workspace created from the imported image runs', async () => {
    try {
      const w = await createWs('fromimport', IMPORTED);
      assert.equal(w.state, 'Running', w.reason);
      assert.equal(w.reasonCode, '');
    } finally {
      await removeWs('fromimport');
    }
  });

  test('remove on one host takes the name there only; again there is NOT_FOUND naming the host', async () => {
    const r = await unary(images, images.Remove, { image: IMPORTED, hosts: ['n1'] });
    assert.deepEqual(r.removed.map((x) => [x.host, x.untagged]), [['n1', [IMPORTED]]]);
    assert.deepEqual(await hostsWith(IMPORTED), ['n2', 'n3']);
    await assert.rejects(unary(images, images.Remove, { image: IMPORTED, hosts: ['n1'] }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', { field: 'image', message: /not found on host n1/ }));
  });

  test("a pull of an image the lab's registry does not have ends NOT_FOUND naming the host", async () => {
    await assert.rejects(collect(images.Pull({ image: `${REGISTRY}/nope:v1`, hosts: ['n2'] })), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', { message: /^host n2: / }));
    await assert.rejects(collect(images.Pull({ image: `${REGISTRY}/nope:v1` })), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', { message: /^host n\d: .*\(failed on n1, n2, n3\)$/ }));
  });

  test('a pull of an image pushed to the lab registry streams per-layer progress from each host, then each host\'s image', async () => {
    // Two layers (busybox and one more), so progress is per layer.
    const bb = await busyboxImage(path.join(work, 'bb2'));
    const img = ociImageOf([...bb.tars, tarOf({ 'etc/pulled': 'through the controller\n' })], hostPlatform(), { Env: ['PATH=/bin'], Cmd: ['/bin/sh'] });
    const layout = path.join(work, 'push');
    await writeOciLayout(layout, img, 'v1');
    await run('nsenter', ['-t', String(lab.switch.pid), '-n', '--', process.execPath, '--input-type=module', '-e', PUSH_SCRIPT], { env: { ...process.env, LAYOUT: layout, REGISTRY, REPO: 'lxr/pulled', TAG: 'v1' } });
    const events = (await collect(images.Pull({ image: PULLED }))) as ClusterPullImageResponse[];
    const layers = img.layers.map((l) => l.digest).sort();
    for (const h of HOSTS) {
      const mine = events.filter((e) => e.host === h);
      const progress = mine.filter((e) => e.progress);
      assert.deepEqual([...new Set(progress.map((e) => e.progress!.digest))].sort(), layers, `${h}: progress of both layers`);
      for (const d of layers) assert.ok(progress.some((e) => e.progress!.digest === d && e.progress!.state === 'done'), `${h}: ${d} done`);
      assert.equal(mine.at(-1)!.event, 'image', `${h}: the image comes last`);
      assert.deepEqual(mine.at(-1)!.image!.names, [PULLED]);
      assert.equal(mine.at(-1)!.image!.digest, img.manifest.digest);
    }
    assert.deepEqual(await hostsWith(PULLED), HOSTS);
  });

  test('a workspace whose image does not exist becomes Failed with reasonCode LXR_NOT_FOUND', async () => {
    try {
      const w = await createWs('noimage', `${REGISTRY}/nope:v1`, { host: 'n3' });
      assert.equal(w.state, 'Failed');
      assert.equal(w.reasonCode, 'LXR_NOT_FOUND', w.reason);
      assert.match(w.reason, /not found/);
    } finally {
      await removeWs('noimage');
    }
  });

  test('bad requests are refused with the field and the host named, and leave nothing behind', async () => {
    const bad = (code: grpc.status, reason: string, field?: string, message?: RegExp) => grpcErr(code, reason, { ...(field ? { field } : {}), ...(message ? { message } : {}) });
    await assert.rejects(collect(images.Pull({ image: '' })), bad(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', 'image'));
    await assert.rejects(collect(images.Pull({ image: IMPORTED, hosts: ['n9'] })), bad(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', 'hosts', /host "n9" not found/));
    await assert.rejects(unary(images, images.List, { host: 'n9' }), bad(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', 'host', /host "n9"/));
    await assert.rejects(unary(images, images.Remove, { image: '' }), bad(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', 'image'));
    await assert.rejects(unary(images, images.Remove, { image: 'never/was:here' }), bad(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', 'image', /not found on any of the hosts n1, n2, n3/));
    await assert.rejects(importArchive(archive, { hosts: ['n9'] }), bad(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', 'header.hosts', /host "n9" not found/));
    // An empty archive: a header without data, or no message at all.
    await assert.rejects(importArchive(Buffer.alloc(0), { hosts: ['n1'] }), bad(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', 'data', /no archive was sent/));
    await assert.rejects(importArchive(Buffer.alloc(0), null, { noMessages: true }), bad(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', 'data'));
    // A header after the first message.
    await assert.rejects(importArchive(archive, { hosts: ['n1'] }, { chunk: 64 << 10, headerAgain: true }), bad(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', 'header'));
    // Garbage: every host refuses it, the first one is named; no path of ours shows.
    const garbage = await importArchive(randomBytes(300 << 10)).then(
      () => assert.fail('garbage imported'),
      (e: grpc.ServiceError) => e,
    );
    bad(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', 'data', /^host n\d: invalid argument data: /)(garbage);
    assert.doesNotMatch(garbage.details, /\/state\/|archive the archive/);
    // The agent's own Load refuses an empty stream naming data too.
    const agent = new ImagesClient(`unix://${lab.hosts[0]!.socket}`, grpc.credentials.createInsecure());
    try {
      const e = await new Promise<grpc.ServiceError | null>((resolve) => agent.Load((err) => resolve(err)).end());
      bad(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', 'data', /no archive was sent/)(e);
    } finally {
      agent.close();
    }
    assert.deepEqual(await leftovers(), []);
    // Nothing was imported by any of it.
    const names = [...(await list()).values()].flat();
    assert.deepEqual(names.filter((n) => ![IMPORTED, ONLY_N2, PULLED].includes(n)), []);
  });

  test('a 512 MiB upload passes the controller and an agent with bounded memory (backpressure both hops)', async () => {
    const pids = { controller: lab.controller!.proc.pid, n1: lab.hosts[0]!.agent.pid };
    const rss = rssBytes;
    const base = { controller: rss(pids.controller), n1: rss(pids.n1) };
    const peak = { ...base };
    const sampler = setInterval(() => {
      peak.controller = Math.max(peak.controller, rss(pids.controller));
      peak.n1 = Math.max(peak.n1, rss(pids.n1));
    }, 50);
    try {
      // Not an archive: it is all spooled, twice, before the agent finds out.
      const chunk = randomBytes(1 << 20);
      const big = Buffer.concat(Array.from({ length: 512 }, () => chunk));
      await assert.rejects(importArchive(big, { hosts: ['n1'] }, { chunk: 1 << 20 }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'data', message: /^host n1: / }));
    } finally {
      clearInterval(sampler);
    }
    for (const k of ['controller', 'n1'] as const) {
      const grew = peak[k] - base[k];
      assert.ok(grew < 200 << 20, `${k} RSS grew by ${(grew / 1048576).toFixed(0)} MiB for a 512 MiB upload`);
    }
    assert.deepEqual(await leftovers(), []);
  });

  test('an upload cancelled half way leaves no spooled archive, in the controller or in an agent', async () => {
    // Through the controller: cancelled while the controller spools.
    const call = images.Import(new grpc.Metadata(), () => {});
    call.write({ header: { hosts: ['n1'] }, data: archive.subarray(0, 64 << 10) });
    await until('the controller spooling', async () => (await leftovers()).some((p) => p.includes(`${path.sep}controller${path.sep}`)));
    call.cancel();
    await until('the controller spool removed', async () => (await leftovers()).length === 0);
    // Straight to an agent: cancelled while the agent spools.
    const agent = new ImagesClient(`unix://${lab.hosts[1]!.socket}`, grpc.credentials.createInsecure());
    try {
      const load = agent.Load(() => {});
      load.write({ repository: 'lab.example/x', data: archive.subarray(0, 64 << 10) });
      await until('the agent spooling', async () => (await leftovers()).some((p) => p.includes(`${path.sep}n2${path.sep}`)));
      load.cancel();
      await until('the agent spool removed', async () => (await leftovers()).length === 0);
    } finally {
      agent.close();
    }
  });
});
