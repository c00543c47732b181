// The registry client against a real registry (Debian's docker-registry) on
// loopback: multi-platform negotiation, verified downloads into the blob
// store, Basic and token auth, retries, mirrors, tampering and plain HTTP.
// Root is not needed.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { BlobStore } from '../../agent/image/blob-store.js';
import { parseReference } from '../../agent/image/reference.js';
import { DockerConfigCredentials } from '../../agent/image/registry/auth.js';
import { RegistryClient, type RegistryClientOptions, type ResolvedImage } from '../../agent/image/registry/client.js';
import { layerCompression } from '../../agent/image/registry/mediatypes.js';
import { hostPlatform } from '../../agent/image/registry/platform.js';
import { buildImage, twoPlatformImage, type TestImage, zstdAvailable, ZSTD_SKIP } from '../helpers/oci-image.js';
import { credentialsFor, REGISTRY_BIN, REGISTRY_SKIP, startProxy, startRegistry, type TestProxy, type TestRegistry, TestPusher } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

const skip = existsSync(REGISTRY_BIN) ? false : REGISTRY_SKIP;
const FAST: RegistryClientOptions = { backoffMs: 5, maxBackoffMs: 20, timeoutMs: 10_000 };

const newStore = async (): Promise<BlobStore> => new BlobStore(await tempDir('regblobs'));

function client(opts: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ ...FAST, ...opts });
  after(() => c.close());
  return c;
}

/** Fetches config and layers and checks them against the image that was pushed. */
async function pullAndCheck(c: RegistryClient, r: ResolvedImage, store: BlobStore, img: TestImage): Promise<void> {
  assert.equal(r.manifestDigest, img.manifest.digest);
  assert.equal(r.config.digest, img.config.digest);
  const config = await c.fetchConfig(r.reference, r.config, store);
  assert.deepEqual(config.rootfs.diff_ids, img.diffIds);
  assert.equal(config.architecture, img.platform.architecture);
  let progressed = 0;
  for (const [i, layer] of r.layers.entries()) {
    const res = await c.fetchBlob(r.reference, layer.digest, layer.size, store, { onProgress: (done) => (progressed = Math.max(progressed, done)) });
    assert.equal(res.digest, img.layers[i]!.digest);
    assert.deepEqual(await readFile(store.path(layer.digest)), img.layers[i]!.data);
  }
  assert.ok(progressed > 0, 'progress reported');
}

const rejectsWith = (p: Promise<unknown>, reason: string, message?: RegExp): Promise<void> =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });

describe('registry client, anonymous registry', { skip }, () => {
  let reg: TestRegistry;
  const multi = twoPlatformImage('oci');
  const dockerMulti = twoPlatformImage('docker');
  const mixed = buildImage({
    format: 'oci',
    layers: [
      { files: { 'a.txt': 'plain\n' }, compression: 'none' },
      { files: { 'b.txt': 'gzip\n' }, compression: 'gzip' },
      ...(zstdAvailable() ? [{ files: { 'c.txt': 'zstd\n' }, compression: 'zstd' as const }] : []),
    ],
  });
  const dockerSingle = buildImage({ format: 'docker', layers: [{ files: { 'd/e.txt': 'docker\n' } }] });
  const hostImage = (imgs: TestImage[]): TestImage => imgs.find((i) => i.platform.architecture === hostPlatform().architecture) ?? imgs[0]!;
  const explicitIfForeign = (): RegistryClientOptions => (['amd64', 'arm64'].includes(hostPlatform().architecture) ? {} : { platform: { os: 'linux', architecture: 'amd64' } });

  before(async () => {
    reg = await startRegistry();
    const pusher = new TestPusher(reg.host);
    try {
      await pusher.pushIndex('lxr/multi', multi.index, multi.images, '1');
      await pusher.pushIndex('lxr/dmulti', dockerMulti.index, dockerMulti.images, '1');
      await pusher.pushImage('lxr/mixed', mixed, 'latest');
      await pusher.pushImage('lxr/docker', dockerSingle, 'v1');
    } finally {
      pusher.close();
    }
  });
  after(() => reg?.stop());

  it('pulls an OCI index for the host platform, verified into the store', async () => {
    const c = client(explicitIfForeign());
    const store = await newStore();
    const r = await c.resolve(`${reg.host}/lxr/multi:1`, { store });
    assert.equal(r.digest, multi.index.digest);
    assert.equal(r.index?.digest, multi.index.digest);
    assert.equal(r.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(r.manifestMediaType, 'application/vnd.oci.image.manifest.v1+json');
    const want = hostImage(multi.images);
    assert.equal(r.platform.architecture, want.platform.architecture);
    assert.ok(await store.has(multi.index.digest), 'index stored');
    assert.ok(await store.has(want.manifest.digest), 'manifest stored');
    await pullAndCheck(c, r, store, want);
  });

  it('selects another platform when asked', async () => {
    const c = client({ platform: { os: 'linux', architecture: 'arm64' } });
    const r = await c.resolve(`${reg.host}/lxr/multi:1`);
    assert.deepEqual(r.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' });
    await pullAndCheck(c, r, await newStore(), multi.images[1]!);
    const amd = await c.resolve(`${reg.host}/lxr/multi:1`, { platform: { os: 'linux', architecture: 'amd64' } });
    assert.equal(amd.manifestDigest, multi.images[0]!.manifest.digest);
  });

  it('names the offered platforms when none matches', async () => {
    const c = client({ platform: { os: 'linux', architecture: 's390x' } });
    await rejectsWith(c.resolve(`${reg.host}/lxr/multi:1`), 'LXR_NOT_FOUND', /linux\/s390x.*linux\/amd64, linux\/arm64\/v8/);
  });

  it('pulls a Docker schema 2 manifest list and a single schema 2 manifest', async () => {
    const c = client({ platform: { os: 'linux', architecture: 'arm64' } });
    const store = await newStore();
    const r = await c.resolve(`${reg.host}/lxr/dmulti:1`);
    assert.equal(r.mediaType, 'application/vnd.docker.distribution.manifest.list.v2+json');
    assert.equal(r.manifestMediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    await pullAndCheck(c, r, store, dockerMulti.images[1]!);
    const single = await c.resolve(`${reg.host}/lxr/docker:v1`);
    assert.equal(single.index, undefined);
    assert.equal(single.digest, dockerSingle.manifest.digest);
    assert.equal(single.config.mediaType, 'application/vnd.docker.container.image.v1+json');
    await pullAndCheck(c, single, store, dockerSingle);
  });

  it('pulls uncompressed, gzip and zstd layers', async (t) => {
    if (!zstdAvailable()) t.diagnostic(`zstd layer left out: ${ZSTD_SKIP}`);
    const c = client();
    const r = await c.resolve(`${reg.host}/lxr/mixed`);
    assert.deepEqual(
      r.layers.map((l) => layerCompression(l.mediaType)),
      zstdAvailable() ? ['none', 'gzip', 'zstd'] : ['none', 'gzip'],
    );
    await pullAndCheck(c, r, await newStore(), mixed);
  });

  it('pulls by digest and checks the manifest against it', async () => {
    const c = client();
    const r = await c.resolve(`${reg.host}/lxr/docker@${dockerSingle.manifest.digest}`);
    assert.equal(r.manifestDigest, dockerSingle.manifest.digest);
    assert.equal(await c.hasBlob(r.reference, dockerSingle.config.digest), true);
    assert.equal(await c.hasBlob(r.reference, `sha256:${'0'.repeat(64)}`), false);
  });

  it('reports missing repositories, tags, digests and blobs as NOT_FOUND', async () => {
    const c = client();
    await rejectsWith(c.resolve(`${reg.host}/lxr/nope:1`), 'LXR_NOT_FOUND', /lxr\/nope:1 not found.*(NAME_UNKNOWN|MANIFEST_UNKNOWN)/);
    await rejectsWith(c.resolve(`${reg.host}/lxr/multi:2`), 'LXR_NOT_FOUND', /MANIFEST_UNKNOWN/);
    await rejectsWith(c.resolve(`${reg.host}/lxr/multi@sha256:${'1'.repeat(64)}`), 'LXR_NOT_FOUND');
    const store = await newStore();
    await rejectsWith(c.fetchBlob(parseReference(`${reg.host}/lxr/multi`), `sha256:${'2'.repeat(64)}`, 10, store), 'LXR_NOT_FOUND', /BLOB_UNKNOWN/);
  });

  describe('through a proxy', () => {
    let proxy: TestProxy | undefined;
    after(() => proxy?.stop());

    it('retries 503s and succeeds', async () => {
      let failures = 2;
      proxy = await startProxy(reg.host, {
        intercept(req, res) {
          if (req.url?.includes('/manifests/') && failures > 0) {
            failures--;
            res.writeHead(503, { 'Retry-After': '0' }).end();
            return true;
          }
          return false;
        },
      });
      const c = client();
      const r = await c.resolve(`${proxy.host}/lxr/docker:v1`);
      assert.equal(r.digest, dockerSingle.manifest.digest);
      assert.equal(proxy.requests.filter((x) => x.includes('/manifests/')).length, 3);
      await proxy.stop();
      proxy = undefined;
    });

    it('gives up with UNAVAILABLE after the configured retries', async () => {
      proxy = await startProxy(reg.host, {
        intercept(_req, res) {
          res.writeHead(502).end();
          return true;
        },
      });
      const c = client({ retries: 2 });
      await rejectsWith(c.resolve(`${proxy.host}/lxr/docker:v1`), 'LXR_UNAVAILABLE', /HTTP 502 after 3 attempts/);
      assert.equal(proxy.requests.length, 3);
      await proxy.stop();
      proxy = undefined;
    });

    it('starts a blob again when the connection breaks or stalls mid-body', async () => {
      const layer = dockerSingle.layers[0]!;
      const config = dockerSingle.config;
      proxy = await startProxy(reg.host, {
        intercept(req, res) {
          const count = proxy!.requests.filter((x) => x === `${req.method} ${req.url}`).length;
          if (count !== 1) return false;
          if (req.url?.endsWith(layer.digest)) {
            // Half the body, then the connection drops.
            res.writeHead(200, { 'Content-Length': String(layer.size) });
            res.write(layer.data.subarray(0, layer.size >> 1), () => setTimeout(() => res.destroy(), 20));
            return true;
          }
          if (req.url?.endsWith(config.digest)) {
            // Half the body, then silence: only the client's timeout ends it.
            res.writeHead(200, { 'Content-Length': String(config.size) });
            res.write(config.data.subarray(0, config.size >> 1));
            return true;
          }
          return false;
        },
      });
      const c = client({ timeoutMs: 500 });
      const store = await newStore();
      const r = await c.resolve(`${proxy.host}/lxr/docker:v1`);
      await pullAndCheck(c, r, store, dockerSingle);
      assert.equal(proxy.requests.filter((x) => x.endsWith(layer.digest)).length, 2);
      assert.equal(proxy.requests.filter((x) => x.endsWith(config.digest)).length, 2);
      await proxy.stop();
      proxy = undefined;
    });

    it('rejects a tampered blob and stores nothing', async () => {
      proxy = await startProxy(reg.host, {
        rewrite(req, body) {
          if (!req.url?.includes('/blobs/') || body.length === 0) return undefined;
          const out = Buffer.from(body);
          const mid = out.length >> 1;
          out[mid] = out[mid]! ^ 0xff;
          return out;
        },
      });
      const c = client();
      const store = await newStore();
      const r = await c.resolve(`${proxy.host}/lxr/docker:v1`);
      await rejectsWith(c.fetchBlob(r.reference, r.layers[0]!.digest, r.layers[0]!.size, store), 'LXR_INVALID_ARGUMENT', /digest mismatch/);
      await rejectsWith(c.fetchConfig(r.reference, r.config, store), 'LXR_INVALID_ARGUMENT', /digest mismatch/);
      assert.equal(await store.has(r.layers[0]!.digest), false);
      assert.deepEqual(await store.list(), []);
      assert.deepEqual(await readdir(join(store.root, 'ingest')).catch(() => []), []);
      await proxy.stop();
      proxy = undefined;
    });

    it('rejects a manifest that does not match the digest it was fetched by', async () => {
      proxy = await startProxy(reg.host, {
        rewrite: (req, body) => (req.url?.includes('/manifests/sha256:') ? Buffer.from(body.toString().replace('"schemaVersion": 2', '"schemaVersion":2')) : undefined),
      });
      const c = client({ platform: { os: 'linux', architecture: 'amd64' } });
      await rejectsWith(c.resolve(`${proxy.host}/lxr/multi:1`), 'LXR_INVALID_ARGUMENT', /digest mismatch/);
      await proxy.stop();
      proxy = undefined;
    });
  });

  describe('mirrors', () => {
    const stops: Array<() => Promise<void>> = [];
    after(async () => {
      for (const s of stops) await s();
    });

    it('falls back to the registry when the mirror 404s', async () => {
      const mirror = await startProxy(null);
      stops.push(mirror.stop);
      const c = client({ mirrors: { [reg.host]: [`http://${mirror.host}`] } });
      const r = await c.resolve(`${reg.host}/lxr/docker:v1`);
      await pullAndCheck(c, r, await newStore(), dockerSingle);
      assert.ok(mirror.requests.some((x) => x.includes('/v2/lxr/docker/manifests/v1')), 'mirror asked first');
      assert.ok(mirror.requests.some((x) => x.includes('/blobs/')), 'mirror asked for blobs');
    });

    it('uses a working mirror without touching the registry', async () => {
      const mirror = await startProxy(reg.host);
      const upstream = await startProxy(reg.host);
      stops.push(mirror.stop, upstream.stop);
      const c = client({ mirrors: { [upstream.host]: [mirror.host] } });
      const r = await c.resolve(`${upstream.host}/lxr/docker:v1`);
      await pullAndCheck(c, r, await newStore(), dockerSingle);
      assert.ok(mirror.requests.length >= 3);
      assert.deepEqual(upstream.requests, []);
    });
  });

  it('speaks plain HTTP to a non-loopback registry only when it is listed as insecure', async (t) => {
    const addr = Object.values(networkInterfaces())
      .flat()
      .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address;
    if (addr === undefined) {
      t.skip('no non-loopback IPv4 address on this machine');
      return;
    }
    // A proxy on the machine's own address: not loopback, so HTTPS by default.
    const { default: http } = await import('node:http');
    const server = http.createServer((req, res) => {
      const up = http.request({ host: '127.0.0.1', port: Number(reg.host.split(':')[1]), method: req.method, path: req.url, headers: req.headers }, (u) => {
        res.writeHead(u.statusCode ?? 502, u.headers);
        u.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => server.listen(0, addr, resolve));
    t.after(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
    const host = `${addr}:${(server.address() as import('node:net').AddressInfo).port}`;
    await rejectsWith(client({ retries: 0 }).resolve(`${host}/lxr/docker:v1`), 'LXR_UNAVAILABLE');
    const r = await client({ insecure: [host] }).resolve(`${host}/lxr/docker:v1`);
    assert.equal(r.digest, dockerSingle.manifest.digest);
    const r2 = await client({ insecure: [addr] }).resolve(`${host}/lxr/docker:v1`);
    assert.equal(r2.digest, dockerSingle.manifest.digest);
  });
});

describe('registry client, Basic auth (htpasswd)', { skip }, () => {
  let reg: TestRegistry;
  const img = buildImage({ format: 'oci', layers: [{ files: { 'secret.txt': 'basic\n' } }] });
  before(async () => {
    reg = await startRegistry({ auth: 'basic' });
    const pusher = new TestPusher(reg.host, credentialsFor(reg));
    try {
      await pusher.pushImage('lxr/private', img, 'latest');
    } finally {
      pusher.close();
    }
  });
  after(() => reg?.stop());

  it('pulls with credentials from a Docker config.json', async () => {
    const dir = await tempDir('dockercfg');
    const file = join(dir, 'config.json');
    await writeFile(file, JSON.stringify({ auths: { [`http://${reg.host}/v1/`]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }));
    const c = client({ credentials: await DockerConfigCredentials.load(file) });
    const r = await c.resolve(`${reg.host}/lxr/private`);
    await pullAndCheck(c, r, await newStore(), img);
  });

  it('refuses a wrong password with PERMISSION_DENIED naming the user', async () => {
    const c = client({ credentials: credentialsFor(reg, 'wrong') });
    await rejectsWith(c.resolve(`${reg.host}/lxr/private`), 'LXR_PERMISSION_DENIED', /denied access .* as user "lxr-user": HTTP 401/);
  });

  it('refuses anonymous pulls, saying credentials are missing', async () => {
    await rejectsWith(client().resolve(`${reg.host}/lxr/private`), 'LXR_PERMISSION_DENIED', /Basic auth.*none are configured/);
  });
});

describe('registry client, token auth', { skip }, () => {
  let reg: TestRegistry;
  const { index, images } = twoPlatformImage('oci');
  before(async () => {
    reg = await startRegistry({ auth: 'token' });
    const pusher = new TestPusher(reg.host, credentialsFor(reg));
    try {
      await pusher.pushIndex('lxr/tok', index, images, 'v1');
    } finally {
      pusher.close();
    }
  });
  after(() => reg?.stop());

  it('pulls with one token for the whole image', async () => {
    const c = client({ credentials: credentialsFor(reg), platform: { os: 'linux', architecture: 'amd64' } });
    const before = reg.tokenRequests;
    const store = await newStore();
    const r = await c.resolve(`${reg.host}/lxr/tok:v1`, { store });
    await pullAndCheck(c, r, store, images[0]!);
    assert.equal(c.tokenRequests, 1);
    assert.equal(reg.tokenRequests - before, 1);
  });

  it('refuses bad credentials at the token server', async () => {
    const c = client({ credentials: credentialsFor(reg, 'wrong') });
    await rejectsWith(c.resolve(`${reg.host}/lxr/tok:v1`), 'LXR_PERMISSION_DENIED', /token server .* refused user "lxr-user" \(HTTP 401\)/);
  });

  it('refuses an anonymous token that grants nothing', async () => {
    await rejectsWith(client().resolve(`${reg.host}/lxr/tok:v1`), 'LXR_PERMISSION_DENIED', /anonymously/);
  });

  it('accepts tokens whose key is named by an x5c chain instead of kid, and anonymous pull tokens', async () => {
    const reg2 = await startRegistry({ auth: 'token', jwsKeyHeader: 'x5c', anonymousPull: true });
    try {
      const pusher = new TestPusher(reg2.host, credentialsFor(reg2));
      try {
        await pusher.pushImage('lxr/pub', images[1]!, 'v1');
      } finally {
        pusher.close();
      }
      const c = client();
      const r = await c.resolve(`${reg2.host}/lxr/pub:v1`);
      await pullAndCheck(c, r, await newStore(), images[1]!);
      assert.equal(c.tokenRequests, 1);
    } finally {
      await reg2.stop();
    }
  });
});
