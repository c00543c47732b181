// The image service end to end: pulls from a real registry on loopback
// (Debian's docker-registry), containers running on the pulled layers through
// the overlay rootfs, cancellation, garbage collection, and imports of OCI
// layouts and `docker save` archives.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { digestOf } from '../../agent/image/digest.js';
import { chainIds } from '../../agent/image/layer-store.js';
import { StaticCredentials } from '../../agent/image/registry/auth.js';
import { RegistryClient } from '../../agent/image/registry/client.js';
import { HttpTransport } from '../../agent/image/registry/http.js';
import { MediaType } from '../../agent/image/registry/mediatypes.js';
import { hostPlatform, type Platform } from '../../agent/image/registry/platform.js';
import { ImageService, type PullProgress } from '../../agent/image/service.js';
import { linuxOverlayFs, planOverlay, prepareOverlayDirs } from '../../agent/rootfs/overlay.js';
import { buildSpec } from '../../agent/runtime/defaults.js';
import { blob, buildIndex, ociImageOf, tarOf, writeOciLayout, type TestImage } from '../helpers/oci-image.js';
import { REGISTRY_BIN, REGISTRY_SKIP, startRegistry, type TestRegistry, TestPusher } from '../helpers/registry.js';
import { makeBusyboxRootfs } from '../helpers/rootfs.js';
import { tarDir } from '../helpers/agent.js';
import { parseCriLog, runtimeFixture } from '../helpers/runtime.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const skip = process.getuid?.() !== 0 ? 'needs root (overlay mounts, containers)' : existsSync(REGISTRY_BIN) ? false : REGISTRY_SKIP;
const T = { timeout: 120_000 };

const isErr = (reason: string, message?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof LxrError, String(e));
  assert.equal(e.reason, reason, e.message);
  if (message) assert.match(e.message, message);
  return true;
};

/** An image from ready-made tars, with this test's config. */
const imageOf = (tars: Buffer[], platform: Platform, cmd: string[], zstd: boolean[] = []): TestImage =>
  ociImageOf(
    tars,
    platform,
    {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LXR_IMAGE=yes'],
      Cmd: cmd,
      WorkingDir: '/',
      ExposedPorts: { '8080/tcp': {} },
      Labels: { 'org.example.test': 'image-service' },
    },
    zstd,
  );

const listOrEmpty = (d: string): Promise<string[]> => readdir(d).catch(() => []);

/** Runs `script` in a container on the overlay of a pulled image's layers; its stdout. */
async function runOnImage(svc: ImageService, ref: string, dir: string, script: string): Promise<string> {
  const fx = await runtimeFixture();
  const plan = planOverlay({ layers: await svc.rootfsLayers(ref), containerDir: path.join(dir, 'c') });
  await prepareOverlayDirs(plan, linuxOverlayFs);
  const id = uniqueId('i');
  const spec = buildSpec((await svc.inspect(ref)).config, { id, command: ['/bin/sh', '-c', script] }, { rootfs: plan.target, cgroupsPath: `${fx.cgroupParent}/${id}` });
  const bundle = path.join(dir, 'bundle');
  await mkdir(bundle, { recursive: true });
  await writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec));
  const log = path.join(dir, 'log');
  await fx.rt.create(id, bundle, { overlay: plan, stdio: { mode: 'log', path: log } });
  try {
    await fx.rt.start(id);
    const exit = await fx.rt.wait(id);
    const out = parseCriLog(await readFile(log, 'utf8'));
    assert.equal(exit.exitCode, 0, out.stderr);
    return out.stdout;
  } finally {
    await fx.rt.delete(id, { force: true });
  }
}

describe('image service', { skip }, () => {
  let reg: TestRegistry;
  let pusher: TestPusher;
  let work: string;
  let transport: HttpTransport;
  const requests: string[] = [];
  let main: ImageService;
  let img: TestImage;
  let shared: TestImage;
  let lonely: TestImage;
  let baseTar: Buffer;
  const NAME = () => `${reg.host}/lxr/app:v1`;
  const host = hostPlatform();

  const service = (root: string): ImageService => {
    const registry = new RegistryClient({
      retries: 0,
      send: (r) => {
        requests.push(`${r.method} ${r.url.pathname}`);
        return transport.send(r);
      },
    });
    return new ImageService({ root, registry });
  };

  before(async () => {
    work = await ownedTempDir('isvc');
    transport = new HttpTransport({ userAgent: 'lxr-test', timeoutMs: 20_000 });
    reg = await startRegistry();
    pusher = new TestPusher(reg.host);
    const base = path.join(work, 'base');
    await makeBusyboxRootfs(base);
    await writeFile(path.join(base, 'etc', 'motd'), 'layer1\n');
    await writeFile(path.join(base, 'etc', 'doomed'), 'whited out by layer2\n');
    await mkdir(path.join(base, 'opq'));
    await writeFile(path.join(base, 'opq', 'lower.txt'), 'hidden by the opaque dir\n');
    baseTar = await tarDir(base);
    const layer2 = tarOf({ 'etc/motd': 'layer2\n', 'etc/.wh.doomed': '', 'opq/.wh..wh..opq': '', 'opq/new.txt': 'new\n' });
    const layer3 = tarOf({ 'etc/l3': 'l3\n' });
    img = imageOf([baseTar, layer2, layer3], host, ['/bin/sh', '-c', 'cat /etc/motd']);
    const other = imageOf([tarOf({ 'etc/other': 'other platform\n' })], host.architecture === 'arm64' ? { os: 'linux', architecture: 'amd64' } : { os: 'linux', architecture: 'arm64', variant: 'v8' }, ['/x']);
    await pusher.pushIndex('lxr/app', buildIndex([img, other]), [img, other], 'v1');
    shared = imageOf([baseTar, tarOf({ 'etc/shared': 'shares the base\n' })], host, ['/bin/sh']);
    await pusher.pushImage('lxr/shared', shared, 'v1');
    lonely = imageOf([tarOf({ 'lonely/file': 'only mine\n' })], host, ['/x']);
    await pusher.pushImage('lxr/lonely', lonely, 'v1');
    main = service(path.join(work, 'main'));
  });

  after(async () => {
    const errors: unknown[] = [];
    for (const step of [() => pusher?.close(), () => transport?.close(), () => reg?.stop(), () => work && rm(work, { recursive: true, force: true })]) {
      try {
        await step();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length) throw new AggregateError(errors, 'image service test cleanup failed');
  });

  test('pull: the host platform from the index, progress per layer, a record with the config', T, async () => {
    const events: PullProgress[] = [];
    const res = await main.pull(NAME(), { onProgress: (e) => events.push(e) });
    assert.deepEqual(res.names, [NAME()]);
    assert.equal(res.manifestDigest, img.manifest.digest);
    assert.equal(res.configDigest, img.config.digest);
    assert.equal(res.platform.architecture, host.architecture);
    assert.deepEqual(res.layers.map((l) => l.chainId), chainIds(img.diffIds));
    assert.deepEqual(res.layers.map((l) => l.diffId), img.diffIds);
    assert.equal(res.size, img.layers.reduce((s, l) => s + l.size, 0));
    assert.deepEqual(res.config.Cmd, ['/bin/sh', '-c', 'cat /etc/motd']);
    assert.equal(res.config.Entrypoint, null);
    assert.ok(res.config.Env.includes('LXR_IMAGE=yes'));
    assert.deepEqual(res.config.ExposedPorts, { '8080/tcp': {} });
    assert.deepEqual(res.config.Labels, { 'org.example.test': 'image-service' });
    for (const l of img.layers) {
      const states = events.filter((e) => e.layer === l.digest).map((e) => e.state);
      assert.equal(states[0], 'waiting');
      for (const s of ['downloading', 'verifying', 'extracting'] as const) assert.ok(states.includes(s), `${l.digest}: ${states.join(',')}`);
      assert.equal(states.at(-1), 'done');
      const last = events.filter((e) => e.layer === l.digest && e.state === 'downloading').at(-1)!;
      assert.deepEqual([last.current, last.total], [l.size, l.size]);
    }
    assert.deepEqual((await main.list()).map((r) => r.names), [[NAME()]]);
    assert.deepEqual((await main.inspect(img.manifest.digest)).names, [NAME()]);
    const dirs = await main.rootfsLayers(NAME());
    assert.equal(dirs.length, 3);
    assert.equal(await readFile(path.join(dirs[2]!, 'etc', 'l3'), 'utf8'), 'l3\n');
    // The same from an inspect, without reading the records again; a layer inspect did not find is NOT_FOUND.
    const inspected = await main.inspect(NAME());
    assert.deepEqual(main.rootfsLayersOf(inspected), dirs);
    const missing = { ...inspected, layers: inspected.layers.map((l, i) => (i === 1 ? { ...l, diffId: '' } : l)) };
    assert.throws(() => main.rootfsLayersOf(missing), (e: LxrError) => e.reason === 'LXR_NOT_FOUND' && e.message.includes(inspected.layers[1]!.chainId));
  });

  test('a container on the overlay of the pulled layers sees the merged tree', T, async () => {
    const script = 'cat /etc/motd; cat /etc/l3; test -e /etc/doomed && echo doomed-visible; ls /opq; echo "$LXR_IMAGE"';
    assert.equal(await runOnImage(main, NAME(), path.join(work, uniqueId('ctr')), script), 'layer2\nl3\nnew.txt\nyes\n');
  });

  for (const auth of ['basic', 'token'] as const) {
    test(`end to end with ${auth} auth: a gzip and a zstd layer pulled with credentials, a container runs on them`, T, async () => {
      const secured = await startRegistry({ auth });
      const creds = new StaticCredentials({ [secured.host]: { username: secured.username, password: secured.password } });
      const securedPusher = new TestPusher(secured.host, creds);
      const root = path.join(work, uniqueId(`auth-${auth}`));
      try {
        const layer2 = tarOf({ 'etc/motd': `pulled with ${auth}\n`, 'etc/.wh.doomed': '' });
        const image = imageOf([baseTar, layer2], host, ['/bin/sh'], [false, true]);
        await securedPusher.pushImage('lxr/private', image, 'v1');
        const ref = `${secured.host}/lxr/private:v1`;
        // Without credentials the registry refuses, with a clear reason.
        const anon = new ImageService({ root: path.join(root, 'anon'), registry: new RegistryClient({ retries: 0 }) });
        await assert.rejects(anon.pull(ref), isErr('LXR_PERMISSION_DENIED'));
        const svc = new ImageService({ root: path.join(root, 'svc'), registry: new RegistryClient({ retries: 0, credentials: creds }) });
        await svc.pull(ref);
        const out = await runOnImage(svc, ref, root, 'cat /etc/motd; test -e /etc/doomed && echo doomed-visible; true');
        assert.equal(out, `pulled with ${auth}\n`);
        if (auth === 'token') assert.ok(secured.tokenRequests > 0, 'the token server was never asked');
      } finally {
        await securedPusher.close();
        await secured.stop();
      }
    });
  }

  test('a second pull finds everything and downloads no blob; a missing tag is NOT_FOUND', T, async () => {
    requests.length = 0;
    const events: PullProgress[] = [];
    await main.pull(NAME(), { onProgress: (e) => events.push(e) });
    for (const l of img.layers) {
      assert.deepEqual(events.filter((e) => e.layer === l.digest).map((e) => e.state), ['waiting', 'exists']);
    }
    assert.deepEqual(requests.filter((r) => r.includes('/blobs/')), [], requests.join('\n'));
    await assert.rejects(main.pull(`${reg.host}/lxr/app:nope`), isErr('LXR_NOT_FOUND'));
    await assert.rejects(main.pull(`${reg.host}/lxr/missing:v1`), isErr('LXR_NOT_FOUND'));
    await assert.rejects(main.inspect('lxr/unknown'), isErr('LXR_NOT_FOUND'));
    await assert.rejects(main.remove('lxr/unknown'), isErr('LXR_NOT_FOUND'));
  });

  test('cancelling mid-pull rejects and leaves no image, layer or partial blob', T, async () => {
    const root = path.join(work, 'cancel');
    const svc = service(root);
    const ac = new AbortController();
    const events: PullProgress[] = [];
    await assert.rejects(
      svc.pull(NAME(), {
        signal: ac.signal,
        onProgress: (e) => {
          events.push(e);
          if (e.state === 'downloading') ac.abort();
        },
      }),
      isErr('LXR_UNAVAILABLE', /^pull cancelled$/),
    );
    assert.ok(events.some((e) => e.state === 'downloading'));
    assert.deepEqual(await svc.list(), []);
    assert.deepEqual(await listOrEmpty(path.join(root, 'layers')), []);
    assert.deepEqual(await listOrEmpty(path.join(root, 'ingest')), []);
    // Nothing under blobs/ is a layer: at most the index, manifest and config landed.
    const blobs = (await svc.blobs.list()).map((b) => b.digest);
    for (const l of img.layers) assert.ok(!blobs.includes(l.digest));
    // The service is still usable afterwards.
    const res = await svc.pull(NAME());
    assert.equal(res.layers.length, 3);
  });

  test('cancelling while layers are extracting leaves nothing partial either', T, async () => {
    const root = path.join(work, 'cancel-extract');
    const svc = service(root);
    const ac = new AbortController();
    const baseChain = chainIds(img.diffIds)[0]!.slice(7);
    const staging: string[] = [];
    await assert.rejects(
      svc.pull(NAME(), {
        signal: ac.signal,
        onProgress: (e) => {
          // A little after the base layer's unpack started, well before it ends.
          if (e.state === 'extracting' && e.layer === img.layers[0]!.digest) {
            setTimeout(() => {
              staging.push(...readdirSync(path.join(root, 'layers')).filter((n) => n.startsWith(`.staging-${baseChain}`)));
              ac.abort();
            }, 15);
          }
        },
      }),
      isErr('LXR_UNAVAILABLE', /^pull cancelled$/),
    );
    assert.deepEqual(await svc.list(), []);
    const left = await listOrEmpty(path.join(root, 'layers'));
    // Layers that finished before the cancel are whole; nothing else is there.
    for (const n of left) assert.match(n, /^[0-9a-f]{64}$/);
    assert.equal(staging.length, 1, 'the cancel came while the base layer was being unpacked');
    assert.ok(!left.includes(baseChain), 'the base layer was cancelled mid-extract');
    assert.deepEqual(await listOrEmpty(path.join(root, 'ingest')), []);
  });

  test('concurrent pulls of one image download and unpack each layer once', T, async () => {
    const svc = service(path.join(work, 'concurrent'));
    requests.length = 0;
    const [a, b] = await Promise.all([svc.pull(NAME()), svc.pull(NAME())]);
    assert.deepEqual(a, b);
    for (const l of img.layers) assert.equal(requests.filter((r) => r === `GET /v2/lxr/app/blobs/${l.digest}`).length, 1, l.digest);
    assert.equal((await readdir(path.join(work, 'concurrent', 'layers'))).length, 3);
  });

  test('a layer whose content does not match the config diffID fails the pull and leaves no layer', T, async () => {
    const good = imageOf([tarOf({ 'a/b': 'x\n' })], host, ['/x']);
    const configJson = JSON.parse(good.config.data.toString());
    configJson.rootfs.diff_ids = [digestOf(Buffer.from('not the tar'))];
    const config = blob(MediaType.OciConfig, Buffer.from(JSON.stringify(configJson)));
    const d = (x: { mediaType: string; digest: string; size: number }) => ({ mediaType: x.mediaType, digest: x.digest, size: x.size });
    const manifest = blob(MediaType.OciManifest, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: d(config), layers: good.layers.map(d) })));
    await pusher.pushImage('lxr/liar', { ...good, config, manifest }, 'v1');
    const root = path.join(work, 'liar');
    const svc = service(root);
    await assert.rejects(svc.pull(`${reg.host}/lxr/liar:v1`), isErr('LXR_INVALID_ARGUMENT', /diffID mismatch/));
    assert.deepEqual(await svc.list(), []);
    assert.deepEqual(await listOrEmpty(path.join(root, 'layers')), []);
  });

  test('gc: removes what a removed image alone used, never what another image or a container uses', T, async () => {
    await main.pull(`${reg.host}/lxr/shared:v1`);
    await main.pull(`${reg.host}/lxr/lonely:v1`);
    const [lonelyChain] = chainIds(lonely.diffIds);
    assert.deepEqual(await main.remove(`${reg.host}/lxr/lonely:v1`), { untagged: [`${reg.host}/lxr/lonely:v1`], deleted: lonely.manifest.digest });
    const app = await main.inspect(NAME());
    assert.deepEqual(await main.remove(NAME()), { untagged: [NAME()], deleted: img.manifest.digest });
    assert.deepEqual((await main.list()).map((r) => r.names[0]), [`${reg.host}/lxr/shared:v1`]);

    const removed = await main.gc(new Set([lonelyChain!]));
    const appChains = chainIds(img.diffIds);
    assert.deepEqual(removed.layers.sort(), appChains.slice(1).sort());
    const expectBlobs = [app.indexDigest!, img.manifest.digest, img.config.digest, img.layers[1]!.digest, img.layers[2]!.digest, lonely.manifest.digest, lonely.config.digest];
    assert.deepEqual(removed.blobs.sort(), expectBlobs.sort());
    // The shared base layer, the second image and the in-use layer are intact.
    for (const d of (await main.rootfsLayers(`${reg.host}/lxr/shared:v1`))) assert.ok(existsSync(d), d);
    assert.ok(await main.layers.has(appChains[0]!));
    assert.ok(await main.layers.has(lonelyChain!));
    assert.ok(await main.blobs.has(lonely.layers[0]!.digest));
    assert.ok(await main.blobs.has(shared.layers[0]!.digest));
    assert.ok(await main.blobs.has(shared.manifest.digest));

    // Once no container uses it, the lonely layer goes too; a second gc finds nothing.
    const again = await main.gc(new Set());
    assert.deepEqual(again, { blobs: [lonely.layers[0]!.digest], layers: [lonelyChain!] });
    assert.deepEqual(await main.gc(), { blobs: [], layers: [] });
  });

  test('import: an OCI layout dir and a tar of it', T, async () => {
    const layout = path.join(work, 'layout');
    await writeOciLayout(layout, img, 'example.com/lxr/imported:v1');

    const svc = service(path.join(work, 'import-oci'));
    const [res] = await svc.import(layout);
    assert.deepEqual(res!.names, ['example.com/lxr/imported:v1']);
    assert.equal(res!.manifestDigest, img.manifest.digest);
    assert.deepEqual(res!.layers.map((l) => l.chainId), chainIds(img.diffIds));
    const dirs = await svc.rootfsLayers('example.com/lxr/imported:v1');
    assert.equal(await readFile(path.join(dirs[1]!, 'etc', 'motd'), 'utf8'), 'layer2\n');
    assert.ok(existsSync(path.join(dirs[0]!, 'bin', 'busybox')));

    // The same layout as a tar, under another name, into a fresh store.
    await writeOciLayout(layout, img, 'example.com/lxr/imported:tar');
    const tarFile = path.join(work, 'layout.tar');
    await writeFile(tarFile, await tarDir(layout));
    const svc2 = service(path.join(work, 'import-oci-tar'));
    const [res2] = await svc2.import(tarFile, { tmpDir: work });
    assert.deepEqual(res2!.names, ['example.com/lxr/imported:tar']);
    assert.equal((await svc2.rootfsLayers('example.com/lxr/imported:tar')).length, 3);
    assert.deepEqual((await readdir(work)).filter((n) => n.startsWith('lxr-import-')), [], 'the temp extraction dir is removed');

    // A corrupted blob in the layout is refused and nothing is recorded.
    const bad = path.join(work, 'layout-bad');
    await rm(bad, { recursive: true, force: true });
    await mkdir(bad);
    for (const f of ['oci-layout', 'index.json']) await writeFile(path.join(bad, f), await readFile(path.join(layout, f)));
    await mkdir(path.join(bad, 'blobs', 'sha256'), { recursive: true });
    for (const b of [img.manifest, img.config, ...img.layers]) {
      const data = b === img.layers[2] ? Buffer.concat([b.data.subarray(0, -1), Buffer.from([b.data.at(-1)! ^ 1])]) : b.data;
      await writeFile(path.join(bad, 'blobs', 'sha256', b.digest.slice(7)), data);
    }
    const svc3 = service(path.join(work, 'import-bad'));
    await assert.rejects(svc3.import(bad), isErr('LXR_INVALID_ARGUMENT', /digest mismatch/));
    assert.deepEqual(await svc3.list(), []);
  });

  test('import: a docker save archive', T, async () => {
    const save = path.join(work, 'save');
    await mkdir(save);
    const layers: string[] = [];
    for (const [i, t] of img.tars.entries()) {
      const rel = `${digestOf(t).slice(7)}/layer.tar`;
      await mkdir(path.join(save, path.dirname(rel)));
      await writeFile(path.join(save, rel), t);
      layers.push(rel);
      assert.ok(i < 3);
    }
    const cfgName = `${img.config.digest.slice(7)}.json`;
    await writeFile(path.join(save, cfgName), img.config.data);
    await writeFile(path.join(save, 'manifest.json'), JSON.stringify([{ Config: cfgName, RepoTags: ['lxr/saved:1', 'example.com/saved:2'], Layers: layers }]));
    await writeFile(path.join(save, 'repositories'), '{}');
    const tarFile = path.join(work, 'save.tar');
    await writeFile(tarFile, await tarDir(save));

    const svc = service(path.join(work, 'import-docker'));
    const [res] = await svc.import(tarFile, { tmpDir: work });
    assert.deepEqual(res!.names, ['docker.io/lxr/saved:1', 'example.com/saved:2']);
    assert.equal(res!.configDigest, img.config.digest);
    assert.deepEqual(res!.layers.map((l) => l.chainId), chainIds(img.diffIds));
    assert.deepEqual(res!.config.Cmd, ['/bin/sh', '-c', 'cat /etc/motd']);
    const dirs = await svc.rootfsLayers('lxr/saved:1');
    assert.equal(await readFile(path.join(dirs[2]!, 'etc', 'l3'), 'utf8'), 'l3\n');
    // The made-up manifest is a stored blob like any other.
    assert.ok(await svc.blobs.has(res!.manifestDigest));
    assert.equal((await svc.blobs.readJson<{ mediaType: string }>(res!.manifestDigest)).mediaType, MediaType.DockerManifest);
  });
});
