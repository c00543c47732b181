// Registry auth, pure parts: WWW-Authenticate parsing, Docker config.json
// credential lookup, and the token flow's caching against a fake transport.

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { type Challenge, credentialKeyHost, DockerConfigCredentials, parseWwwAuthenticate, RegistryAuth, StaticCredentials } from '../../agent/image/registry/auth.js';
import type { HttpRequest, HttpResponse } from '../../agent/image/registry/http.js';

const wwwCases: Array<{ header: string; want: Challenge[] }> = [
  {
    header: 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
    want: [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' } }],
  },
  { header: 'Basic realm="Registry Realm"', want: [{ scheme: 'basic', params: { realm: 'Registry Realm' } }] },
  { header: 'basic realm=plain', want: [{ scheme: 'basic', params: { realm: 'plain' } }] },
  { header: 'Bearer realm="a\\"b\\\\c",service=x', want: [{ scheme: 'bearer', params: { realm: 'a"b\\c', service: 'x' } }] },
  { header: 'Bearer realm = "r" , Service="S"', want: [{ scheme: 'bearer', params: { realm: 'r', service: 'S' } }] },
  {
    header: 'Basic realm="b", Bearer realm="https://t/token",service="s"',
    want: [
      { scheme: 'basic', params: { realm: 'b' } },
      { scheme: 'bearer', params: { realm: 'https://t/token', service: 's' } },
    ],
  },
  { header: 'Bearer realm="x,y",scope="repository:a:pull,push"', want: [{ scheme: 'bearer', params: { realm: 'x,y', scope: 'repository:a:pull,push' } }] },
  {
    header: 'Negotiate abc123==, Basic realm="r"',
    want: [
      { scheme: 'negotiate', params: {}, token68: 'abc123==' },
      { scheme: 'basic', params: { realm: 'r' } },
    ],
  },
  { header: 'Bearer', want: [{ scheme: 'bearer', params: {} }] },
  { header: '', want: [] },
  { header: 'Bearer realm="unterminated', want: [{ scheme: 'bearer', params: { realm: 'unterminated' } }] },
];

describe('parseWwwAuthenticate', () => {
  for (const c of wwwCases) {
    it(JSON.stringify(c.header), () => assert.deepEqual(parseWwwAuthenticate(c.header), c.want));
  }
});

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('Docker config.json credentials', () => {
  const store = new DockerConfigCredentials({
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hubuser:hubpass') },
      'ghcr.io': { username: 'gh', password: 'tok' },
      'https://registry.example.com/v1/': { auth: b64('ex:pw:with:colons') },
      'localhost:5000': { auth: b64('local:5000') },
      'localhost': { auth: b64('local:noport') },
      'http://plain.example:8080': { auth: b64('plain:pw') },
      'id.example.com': { identitytoken: 'refresh-me', username: '<token>' },
      'empty.example.com': {},
    },
  });
  const cases: Array<[string, unknown]> = [
    ['docker.io', { username: 'hubuser', password: 'hubpass' }],
    ['index.docker.io', { username: 'hubuser', password: 'hubpass' }],
    ['registry-1.docker.io', { username: 'hubuser', password: 'hubpass' }],
    ['ghcr.io', { username: 'gh', password: 'tok' }],
    ['registry.example.com', { username: 'ex', password: 'pw:with:colons' }],
    ['localhost:5000', { username: 'local', password: '5000' }],
    ['localhost', { username: 'local', password: 'noport' }],
    ['localhost:5001', undefined],
    ['plain.example:8080', { username: 'plain', password: 'pw' }],
    ['plain.example', undefined],
    ['id.example.com', { username: '<token>', identityToken: 'refresh-me' }],
    ['empty.example.com', undefined],
    ['quay.io', undefined],
  ];
  for (const [registry, want] of cases) {
    it(`lookup ${registry}`, () => assert.deepEqual(store.lookup(registry), want));
  }

  it('normalises keys as Docker does', () => {
    assert.equal(credentialKeyHost('https://index.docker.io/v1/'), 'index.docker.io');
    assert.equal(credentialKeyHost('http://h:5000/x'), 'h:5000');
    assert.equal(credentialKeyHost('h:5000'), 'h:5000');
  });

  it('prefers the exact key', () => {
    const s = new DockerConfigCredentials({ auths: { 'https://docker.io/v1/': { auth: b64('a:1') }, 'docker.io': { auth: b64('b:2') } } });
    assert.deepEqual(s.lookup('docker.io'), { username: 'b', password: '2' });
  });

  it('refuses malformed entries with INVALID_ARGUMENT', () => {
    assert.throws(() => new DockerConfigCredentials({ auths: { h: { auth: b64('nocolon') } } }), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && /base64/.test(e.message));
    assert.throws(() => new DockerConfigCredentials({ auths: { h: { auth: '%%%' } } }), /base64/);
    assert.throws(() => new DockerConfigCredentials({ auths: [] as unknown as object }), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT');
    assert.throws(() => new DockerConfigCredentials('x'), /not a JSON object/);
  });

  it('a config without auths has no credentials; a missing default file is no error', async () => {
    assert.equal(new DockerConfigCredentials({ credsStore: 'desktop' }).lookup('docker.io'), undefined);
    const saved = process.env['DOCKER_CONFIG'];
    process.env['DOCKER_CONFIG'] = '/nonexistent/lxr-test';
    try {
      assert.equal((await DockerConfigCredentials.load()).lookup('docker.io'), undefined);
    } finally {
      if (saved === undefined) delete process.env['DOCKER_CONFIG'];
      else process.env['DOCKER_CONFIG'] = saved;
    }
    await assert.rejects(DockerConfigCredentials.load('/nonexistent/lxr-test/config.json'), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT');
  });
});

function response(status: number, body: unknown): HttpResponse {
  const stream = Readable.from([Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))]) as unknown as HttpResponse['body'];
  return { status, headers: {}, body: stream, url: new URL('https://auth.example/token') };
}

describe('RegistryAuth token flow', () => {
  const target = { host: 'reg.example', registry: 'reg.example' };
  const challenge = ['Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"'];

  function setup(creds?: ConstructorParameters<typeof StaticCredentials>[0], reply: (r: HttpRequest) => HttpResponse = () => response(200, { token: 'T1', expires_in: 120 })) {
    const seen: HttpRequest[] = [];
    let now = 1_000_000;
    const auth = new RegistryAuth({
      credentials: creds ? new StaticCredentials(creds) : undefined,
      send: async (r) => {
        seen.push(r);
        return reply(r);
      },
      now: () => now,
    });
    return { auth, seen, advance: (ms: number) => (now += ms) };
  }

  it('fetches a token with service, scope and Basic credentials, then caches it per scope until it expires', async () => {
    const { auth, seen, advance } = setup({ 'reg.example': { username: 'u', password: 'p' } });
    assert.equal(await auth.authorization(target, 'repository:a/b:pull'), undefined, 'nothing known before a challenge');
    assert.equal(await auth.respond(target, 'repository:a/b:pull', challenge), 'Bearer T1');
    const url = seen[0]!.url;
    assert.equal(url.searchParams.get('service'), 'reg');
    assert.deepEqual(url.searchParams.getAll('scope'), ['repository:a/b:pull']);
    assert.equal(url.searchParams.get('account'), 'u');
    assert.equal(seen[0]!.headers?.['Authorization'], `Basic ${b64('u:p')}`);
    assert.equal(await auth.authorization(target, 'repository:a/b:pull'), 'Bearer T1');
    assert.equal(auth.tokenRequests, 1);
    await auth.authorization(target, 'repository:other:pull');
    assert.equal(auth.tokenRequests, 2, 'another scope, another token');
    advance(120_000);
    await auth.authorization(target, 'repository:a/b:pull');
    assert.equal(auth.tokenRequests, 3, 'expired token refetched');
  });

  it('takes access_token, defaults expiry to 60 s, and shares concurrent fetches', async () => {
    const { auth, advance } = setup(undefined, () => response(200, { access_token: 'AT' }));
    await auth.respond(target, 'repository:a/b:pull', challenge);
    const all = await Promise.all([1, 2, 3].map(() => auth.authorization(target, 'repository:x:pull')));
    assert.deepEqual(all, ['Bearer AT', 'Bearer AT', 'Bearer AT']);
    assert.equal(auth.tokenRequests, 2);
    advance(56_000);
    await auth.authorization(target, 'repository:x:pull');
    assert.equal(auth.tokenRequests, 3);
  });

  it('uses an identity token with the OAuth2 refresh grant', async () => {
    const { auth, seen } = setup({ 'reg.example': { identityToken: 'IDT' } });
    await auth.respond(target, 'repository:a/b:pull', challenge);
    assert.equal(seen[0]!.method, 'POST');
    const form = new URLSearchParams(seen[0]!.body!.toString());
    assert.equal(form.get('grant_type'), 'refresh_token');
    assert.equal(form.get('refresh_token'), 'IDT');
    assert.equal(form.get('service'), 'reg');
  });

  it('maps token server refusals to PERMISSION_DENIED and outages to UNAVAILABLE', async () => {
    const denied = setup({ 'reg.example': { username: 'u', password: 'bad' } }, () => response(401, 'no'));
    await assert.rejects(denied.auth.respond(target, 'repository:a/b:pull', challenge), (e: LxrError) => e.reason === 'LXR_PERMISSION_DENIED' && /refused user "u"/.test(e.message));
    const down = setup(undefined, () => response(503, ''));
    await assert.rejects(down.auth.respond(target, 'repository:a/b:pull', challenge), (e: LxrError) => e.reason === 'LXR_UNAVAILABLE');
    const empty = setup(undefined, () => response(200, {}));
    await assert.rejects(empty.auth.respond(target, 'repository:a/b:pull', challenge), /without a token/);
  });

  it('answers Basic challenges with credentials, or says none are configured', async () => {
    const { auth } = setup({ 'reg.example': { username: 'u', password: 'p' } });
    assert.equal(await auth.respond(target, 's', ['Basic realm="r"']), `Basic ${b64('u:p')}`);
    assert.equal(await auth.authorization(target, 's'), `Basic ${b64('u:p')}`, 'remembered for later requests');
    const anon = setup();
    await assert.rejects(anon.auth.respond(target, 's', ['Basic realm="r"']), (e: LxrError) => e.reason === 'LXR_PERMISSION_DENIED' && /none are configured/.test(e.message));
    await assert.rejects(anon.auth.respond(target, 's', ['Digest realm="r"']), /Digest|digest/);
  });
});
