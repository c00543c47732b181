// The registry client's pure decisions: endpoints (Docker Hub, mirrors,
// plain HTTP), retry delays, and redirect / retry handling over a fake
// transport.

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { StaticCredentials } from '../../agent/image/registry/auth.js';
import { isLoopbackHost, RegistryClient, registryScheme, retryDelay } from '../../agent/image/registry/client.js';
import { type HttpRequest, type HttpResponse, NetworkError } from '../../agent/image/registry/http.js';
import { digestOf } from '../../agent/image/digest.js';
import { MediaType } from '../../agent/image/registry/mediatypes.js';

describe('registry endpoints', () => {
  const schemeCases: Array<[string, string[], 'http' | 'https']> = [
    ['localhost', [], 'http'],
    ['localhost:5000', [], 'http'],
    ['127.0.0.1:5000', [], 'http'],
    ['127.1.2.3', [], 'http'],
    ['[::1]:5000', [], 'http'],
    ['registry.example.com', [], 'https'],
    ['10.0.0.5:5000', [], 'https'],
    ['10.0.0.5:5000', ['10.0.0.5:5000'], 'http'],
    ['10.0.0.5:5000', ['10.0.0.5'], 'http'],
    ['10.0.0.5:5001', ['10.0.0.5:5000'], 'https'],
    ['localhost.example.com', [], 'https'],
  ];
  for (const [host, insecure, want] of schemeCases) {
    it(`${host} insecure=${JSON.stringify(insecure)} -> ${want}`, () => assert.equal(registryScheme(host, insecure), want));
  }

  it('recognises loopback hosts', () => {
    assert.equal(isLoopbackHost('127.0.0.1'), true);
    assert.equal(isLoopbackHost('128.0.0.1'), false);
    assert.equal(isLoopbackHost('[::1]'), true);
  });

  it('sends docker.io to registry-1.docker.io, mirrors first', () => {
    const c = new RegistryClient({ mirrors: { 'docker.io': ['https://mirror.example.com/prefix', 'localhost:5001'] } });
    const eps = c.endpoints('docker.io');
    assert.deepEqual(
      eps.map((e) => [e.base.href, e.auth.host, e.auth.registry, e.mirror]),
      [
        ['https://mirror.example.com/prefix', 'mirror.example.com', 'mirror.example.com', true],
        ['http://localhost:5001/', 'localhost:5001', 'localhost:5001', true],
        ['https://registry-1.docker.io/', 'registry-1.docker.io', 'docker.io', false],
      ],
    );
    assert.deepEqual(
      c.endpoints('ghcr.io').map((e) => e.base.href),
      ['https://ghcr.io/'],
    );
    c.close();
  });
});

describe('retryDelay', () => {
  it('uses full jitter under an exponential cap', () => {
    assert.equal(retryDelay(0, 100, 10_000, undefined, 0, () => 0.999), 99);
    assert.equal(retryDelay(3, 100, 10_000, undefined, 0, () => 0.5), 400);
    assert.equal(retryDelay(20, 100, 10_000, undefined, 0, () => 0.5), 5000);
  });
  it('honours Retry-After seconds and dates, capped at a minute', () => {
    assert.equal(retryDelay(0, 100, 10_000, '2'), 2000);
    assert.equal(retryDelay(0, 100, 10_000, new Date(5_000).toUTCString(), 1_000), 4000);
    assert.equal(retryDelay(0, 100, 10_000, '3600'), 60_000);
    assert.equal(retryDelay(0, 100, 10_000, 'garbage', 0, () => 0), 0);
  });
});

function res(status: number, headers: Record<string, string> = {}, body: string | Buffer = ''): HttpResponse {
  const stream = Readable.from([Buffer.from(body)]) as unknown as HttpResponse['body'];
  Object.assign(stream, { rawHeaders: Object.entries(headers).flat() });
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { status, headers: lower, body: stream, url: new URL('https://x/') };
}

const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: `sha256:${'c'.repeat(64)}`, size: 2 },
    layers: [],
  }),
);

describe('RegistryClient over a fake transport', () => {
  it('retries network errors and 503s, then answers', async () => {
    const seen: string[] = [];
    const replies: Array<() => HttpResponse> = [
      () => {
        throw new NetworkError('reset', 'ECONNRESET', true);
      },
      () => res(503, { 'Retry-After': '0' }),
      () => res(200, { 'Content-Type': MediaType.OciManifest, 'Docker-Content-Digest': digestOf(manifest) }, manifest),
    ];
    const c = new RegistryClient({
      backoffMs: 1,
      send: async (r: HttpRequest) => {
        seen.push(`${r.method} ${r.url.href} ${r.headers?.['Accept'] ?? ''}`);
        return replies.shift()!();
      },
    });
    const r = await c.resolve('reg.example/a/b:1');
    assert.equal(r.digest, digestOf(manifest));
    assert.equal(seen.length, 3);
    assert.match(seen[0]!, /^GET https:\/\/reg\.example\/v2\/a\/b\/manifests\/1 .*vnd\.oci\.image\.index\.v1\+json/);
  });

  it('does not retry a TLS failure, and reports UNAVAILABLE with the errno', async () => {
    let n = 0;
    const c = new RegistryClient({
      backoffMs: 1,
      send: async () => {
        n++;
        throw new NetworkError('wrong version number', 'ERR_SSL_WRONG_VERSION_NUMBER', false);
      },
    });
    await assert.rejects(c.resolve('reg.example/a:1'), (e: LxrError) => e.reason === 'LXR_UNAVAILABLE' && e.errno === 'ERR_SSL_WRONG_VERSION_NUMBER');
    assert.equal(n, 1);
  });

  it('rejects a manifest whose Docker-Content-Digest disagrees with its bytes', async () => {
    const c = new RegistryClient({
      send: async () => res(200, { 'Content-Type': MediaType.OciManifest, 'Docker-Content-Digest': `sha256:${'0'.repeat(64)}` }, manifest),
    });
    await assert.rejects(c.resolve('reg.example/a:1'), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && /digest mismatch/.test(e.message));
  });

  it('follows redirects, keeping credentials on the registry only', async () => {
    const seen: HttpRequest[] = [];
    const c = new RegistryClient({
      credentials: new StaticCredentials({ 'reg.example': { username: 'u', password: 'p' } }),
      send: async (r) => {
        seen.push(r);
        if (seen.length === 1) return res(401, { 'WWW-Authenticate': 'Basic realm="r"' });
        if (r.url.host === 'reg.example') return res(307, { Location: 'https://storage.example/blob?sig=1' });
        return res(200, { 'Content-Type': MediaType.OciManifest }, manifest);
      },
    });
    await c.resolve('reg.example/a:1');
    assert.equal(seen.length, 3);
    assert.equal(seen[1]!.headers?.['Authorization'], `Basic ${Buffer.from('u:p').toString('base64')}`);
    assert.equal(seen[2]!.url.href, 'https://storage.example/blob?sig=1');
    assert.equal(seen[2]!.headers?.['Authorization'], undefined);
  });

  it('never answers a challenge from where a redirect led (credentials stay with the registry)', async () => {
    const seen: HttpRequest[] = [];
    const c = new RegistryClient({
      credentials: new StaticCredentials({ 'reg.example': { username: 'u', password: 'p' } }),
      send: async (r) => {
        seen.push(r);
        if (r.url.host === 'reg.example') return res(307, { Location: 'https://evil.example/blob' });
        return res(401, { 'WWW-Authenticate': 'Bearer realm="https://evil.example/token",service="x"' });
      },
    });
    await assert.rejects(c.resolve('reg.example/a:1'), (e: LxrError) => e.reason === 'LXR_PERMISSION_DENIED');
    assert.ok(!seen.some((r) => r.url.pathname === '/token'), 'asked the redirect target for a token');
    assert.ok(!seen.some((r) => r.url.host === 'evil.example' && r.headers?.['Authorization'] !== undefined), 'sent credentials off-origin');
  });

  it('refuses a plain-HTTP token realm for a registry reached over HTTPS', async () => {
    const seen: HttpRequest[] = [];
    const c = new RegistryClient({
      credentials: new StaticCredentials({ 'reg.example': { username: 'u', password: 'p' } }),
      send: async (r) => {
        seen.push(r);
        return res(401, { 'WWW-Authenticate': 'Bearer realm="http://reg.example/token",service="x"' });
      },
    });
    await assert.rejects(c.resolve('reg.example/a:1'), (e: LxrError) => e.reason === 'LXR_PERMISSION_DENIED' && /plain-HTTP token realm/.test(e.message));
    assert.ok(!seen.some((r) => r.url.pathname === '/token'));
  });

  it('answers one challenge only: a second 401 is PERMISSION_DENIED', async () => {
    let n = 0;
    const c = new RegistryClient({
      credentials: new StaticCredentials({ 'reg.example': { username: 'u', password: 'p' } }),
      send: async () => {
        n++;
        return res(401, { 'WWW-Authenticate': 'Basic realm="r"' }, JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      },
    });
    await assert.rejects(c.resolve('reg.example/a:1'), (e: LxrError) => e.reason === 'LXR_PERMISSION_DENIED' && /as user "u": HTTP 401 UNAUTHORIZED: authentication required/.test(e.message));
    assert.equal(n, 2);
  });
});
