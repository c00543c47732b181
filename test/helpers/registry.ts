// A real registry on loopback for pull tests: Debian's docker-registry
// (distribution v2.8) with filesystem storage, anonymous, htpasswd (Basic)
// or token auth, the token server running in the test process; a pusher
// speaking the push API through LXR's own auth code; and a small HTTP proxy
// that injects failures or tampers with bodies.
//
// Token auth: distribution 2.8 verifies a token's RS256 signature with the
// key named by its JOSE header: `x5c` (a certificate chain that must verify
// against `rootcertbundle`) or `kid` (libtrust's key ID of a public key in a
// certificate of that bundle). Both work with a self-signed certificate as
// the bundle (the tests use both); by default tokens carry `kid`, computed
// from the certificate's key (see libtrustKeyId), as Docker's auth servers do.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { openSync, closeSync, rmSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { StaticCredentials, type Credentials } from '../../agent/image/registry/auth.js';
import { RegistryClient } from '../../agent/image/registry/client.js';
import { readBody, discard } from '../../agent/image/registry/http.js';
import type { Blob, TestImage } from './oci-image.js';
import { ownedTempDir } from './tmp.js';

export const REGISTRY_BIN = '/usr/bin/docker-registry';
export const REGISTRY_SKIP = 'docker-registry is not installed (Debian packages docker-registry, apache2-utils, openssl)';

export type AuthMode = 'anonymous' | 'basic' | 'token';

export interface RegistryOptions {
  auth?: AuthMode;
  username?: string;
  password?: string;
  /** Token mode: whether the token server grants pull to anonymous requests. Default false. */
  anonymousPull?: boolean;
  /** Token mode: how tokens name their signing key. Default 'kid'. */
  jwsKeyHeader?: 'kid' | 'x5c';
}

export interface TestRegistry {
  /** 127.0.0.1:<port> */
  host: string;
  auth: AuthMode;
  username: string;
  password: string;
  /** Token mode: requests the token server received. */
  readonly tokenRequests: number;
  /** docker-registry's log (for failure messages). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

// Last resort for processes and dirs a crashed test leaves: killed and
// removed synchronously at exit.
const livePids = new Set<number>();
const liveDirs = new Set<string>();
let exitHook = false;
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const pid of livePids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

/** A port free right now (bind :0, read it, close). The caller retries if it is taken by the time it binds. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** libtrust's KeyID: sha256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, in 12 groups of 4. */
export function libtrustKeyId(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  const sum = createHash('sha256').update(der).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of sum) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}

interface TokenServer {
  port: number;
  requests: number;
  close(): Promise<void>;
}

/** Issues JWTs the registry trusts, to callers with the right Basic credentials. */
async function startTokenServer(o: {
  keyPem: string;
  certPem: string;
  service: string;
  issuer: string;
  username: string;
  password: string;
  anonymousPull: boolean;
  keyHeader: 'kid' | 'x5c';
}): Promise<TokenServer> {
  const key = createPrivateKey(o.keyPem);
  const keyRef = o.keyHeader === 'kid' ? { kid: libtrustKeyId(o.certPem) } : { x5c: [new X509Certificate(o.certPem).raw.toString('base64')] };
  const state = { requests: 0 };
  const server = http.createServer((req, res) => {
    state.requests++;
    const url = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization;
    let user: string | undefined;
    if (auth !== undefined) {
      const decoded = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString('utf8') : '';
      if (decoded !== `${o.username}:${o.password}`) {
        res.writeHead(401, { 'Content-Type': 'application/json' }).end(JSON.stringify({ details: 'incorrect username or password' }));
        return;
      }
      user = o.username;
    }
    const access = url.searchParams.getAll('scope').flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      if (type !== 'repository' || name === undefined || actions === undefined) return [];
      const granted = actions.split(',').filter((a) => user !== undefined || (o.anonymousPull && a === 'pull'));
      return granted.length > 0 ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const headerJson = { typ: 'JWT', alg: 'RS256', ...keyRef };
    const claims = { iss: o.issuer, sub: user ?? '', aud: o.service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const signingInput = `${b64url(JSON.stringify(headerJson))}.${b64url(JSON.stringify(claims))}`;
    const token = `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), key))}`;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get requests() {
      return state.requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function waitReady(host: string, proc: ChildProcess, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) return false;
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(`http://${host}/v2/`, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.setTimeout(1000, () => req.destroy());
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts docker-registry on 127.0.0.1 with a fresh port and storage dir.
 * Always pair with stop() (an `after` hook): it kills the process by pid and
 * removes the dir, also when the test failed.
 */
export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  installExitHook();
  const mode = opts.auth ?? 'anonymous';
  const username = opts.username ?? 'lxr-user';
  const password = opts.password ?? 'lxr-secret-pw';
  const dir = await ownedTempDir('registry');
  liveDirs.add(dir);
  let tokenServer: TokenServer | undefined;
  let proc: ChildProcess | undefined;
  const logFile = join(dir, 'registry.log');
  const cleanup = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const step of [async () => proc && (await stopProcess(proc)), async () => tokenServer && (await tokenServer.close()), () => rm(dir, { recursive: true, force: true })]) {
      try {
        await step();
      } catch (e) {
        errors.push(e);
      }
    }
    if (proc?.pid !== undefined) livePids.delete(proc.pid);
    liveDirs.delete(dir);
    if (errors.length > 0) throw new AggregateError(errors, 'stopping the test registry failed');
  };
  try {
    let authYaml = '';
    if (mode === 'basic') {
      const line = execFileSync('htpasswd', ['-Bbn', username, password], { encoding: 'utf8' }).trim();
      await writeFile(join(dir, 'htpasswd'), line + '\n');
      authYaml = `auth:\n  htpasswd:\n    realm: lxr-test\n    path: ${join(dir, 'htpasswd')}\n`;
    } else if (mode === 'token') {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=lxr-test-token-issuer'], { stdio: 'ignore' });
      tokenServer = await startTokenServer({
        keyPem: await readFile(join(dir, 'key.pem'), 'utf8'),
        certPem: await readFile(join(dir, 'cert.pem'), 'utf8'),
        service: 'test-registry',
        issuer: 'test-issuer',
        username,
        password,
        anonymousPull: opts.anonymousPull ?? false,
        keyHeader: opts.jwsKeyHeader ?? 'kid',
      });
      authYaml = `auth:\n  token:\n    realm: http://127.0.0.1:${tokenServer.port}/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: ${join(dir, 'cert.pem')}\n`;
    }
    let host = '';
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      host = `127.0.0.1:${port}`;
      const config =
        `version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n` +
        `http:\n  addr: ${host}\n  secret: ${randomBytes(16).toString('hex')}\n` +
        authYaml;
      await writeFile(join(dir, 'config.yml'), config);
      const fd = openSync(logFile, 'a');
      try {
        proc = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', fd, fd] });
      } finally {
        closeSync(fd);
      }
      if (proc.pid !== undefined) livePids.add(proc.pid);
      proc.on('error', () => {});
      if (await waitReady(host, proc)) break;
      await stopProcess(proc);
      if (proc.pid !== undefined) livePids.delete(proc.pid);
      if (attempt >= 2) throw new Error(`docker-registry did not start: ${await readFile(logFile, 'utf8').catch(() => '')}`);
    }
    return {
      host,
      auth: mode,
      username,
      password,
      get tokenRequests() {
        return tokenServer?.requests ?? 0;
      },
      log: () => readFile(logFile, 'utf8').catch(() => ''),
      stop: cleanup,
    };
  } catch (e) {
    try {
      await cleanup();
    } catch (c) {
      throw new AggregateError([e, c], `${(e as Error).message}; cleanup also failed`);
    }
    throw e;
  }
}

/** Credentials for the registry (by its host), for the client or the pusher. */
export function credentialsFor(reg: TestRegistry, password = reg.password): StaticCredentials {
  const c: Credentials = { username: reg.username, password };
  return new StaticCredentials({ [reg.host]: c });
}

/**
 * Pushes blobs and manifests with the registry push API (monolithic
 * uploads), authenticating through RegistryClient/RegistryAuth like a pull.
 */
export class TestPusher {
  private readonly client: RegistryClient;
  constructor(
    readonly host: string,
    credentials?: StaticCredentials,
  ) {
    this.client = new RegistryClient({ credentials, retries: 0 });
  }

  private async req(repo: string, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<void> {
    const ep = this.client.endpoints(this.host).at(-1)!;
    const res = await this.client.request(ep, `repository:${repo}:pull,push`, method, path, { headers, ...(body ? { body } : {}) });
    if (res.status < 200 || res.status > 299) {
      const text = (await readBody(res, 65536)).toString();
      throw new Error(`push ${method} ${path}: HTTP ${res.status} ${text}`);
    }
    discard(res);
    return undefined;
  }

  async pushBlob(repo: string, b: Blob): Promise<void> {
    const ep = this.client.endpoints(this.host).at(-1)!;
    const res = await this.client.request(ep, `repository:${repo}:pull,push`, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'Content-Length': '0' } });
    const location = res.headers.location;
    if (res.status !== 202 || location === undefined) {
      const text = (await readBody(res, 65536)).toString();
      throw new Error(`push: starting upload to ${repo}: HTTP ${res.status} ${text}`);
    }
    discard(res);
    const url = new URL(location, `http://${this.host}`);
    url.searchParams.set('digest', b.digest);
    await this.req(repo, 'PUT', url.pathname + url.search, { 'Content-Type': 'application/octet-stream' }, b.data);
  }

  async pushManifest(repo: string, reference: string, m: Blob): Promise<void> {
    await this.req(repo, 'PUT', `/v2/${repo}/manifests/${reference}`, { 'Content-Type': m.mediaType }, m.data);
  }

  /** Pushes an image's blobs and manifest; tags it when `tag` is given (else by digest only). */
  async pushImage(repo: string, img: TestImage, tag?: string): Promise<void> {
    for (const b of [img.config, ...img.layers]) await this.pushBlob(repo, b);
    await this.pushManifest(repo, tag ?? img.manifest.digest, img.manifest);
  }

  /** Pushes every platform's image by digest, then the index under `tag`. */
  async pushIndex(repo: string, index: Blob, images: TestImage[], tag: string): Promise<void> {
    for (const img of images) await this.pushImage(repo, img);
    await this.pushManifest(repo, tag, index);
  }

  close(): void {
    this.client.close();
  }
}

export interface ProxyHooks {
  /** Answers a request itself; return true when it did. */
  intercept?(req: IncomingMessage, res: ServerResponse): boolean;
  /** Replaces a forwarded response's body; undefined keeps it. */
  rewrite?(req: IncomingMessage, body: Buffer): Buffer | undefined;
}

export interface TestProxy {
  host: string;
  /** "METHOD path" of every request received. */
  requests: string[];
  stop(): Promise<void>;
}

/** An HTTP proxy in front of `target` (host:port), or a standalone server when target is null. */
export async function startProxy(target: string | null, hooks: ProxyHooks = {}): Promise<TestProxy> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (hooks.intercept?.(req, res)) return;
    if (target === null) {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'not here' }] }));
      return;
    }
    const [hostname, port] = target.split(':');
    const up = http.request({ hostname, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      if (hooks.rewrite === undefined) {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      upRes.on('data', (c: Buffer) => chunks.push(c));
      upRes.on('end', () => {
        const body = Buffer.concat(chunks);
        const out = hooks.rewrite!(req, body) ?? body;
        res.writeHead(upRes.statusCode ?? 502, { ...upRes.headers, 'content-length': String(out.length) }).end(out);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
