// Registry authentication (distribution's token spec and RFC 7617 Basic):
// WWW-Authenticate parsing, credentials from Docker's config.json `auths`,
// and the Bearer token flow with a per-(registry, scope) token cache.

import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { LxrError, invalidArgument } from '../../../proto/shared/errors.js';
import { type HttpResponse, type HttpSend, discard, readBody } from './http.js';

// ---------------------------------------------------------------------------
// WWW-Authenticate

export interface Challenge {
  /** Lowercased: "bearer", "basic", ... */
  scheme: string;
  /** Parameter names lowercased; quoted values unescaped. */
  params: Record<string, string>;
  token68?: string;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*(?=\s*(,|$))/;

/**
 * Parses a WWW-Authenticate value (RFC 7235): one or more challenges, each a
 * scheme followed by a token68 or comma-separated name=value parameters
 * whose values may be quoted strings with backslash escapes. A comma starts
 * a new challenge when what follows is not `name=`. Garbage is skipped
 * rather than fatal: the caller only needs the challenges it understands.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const ws = (): void => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && TCHAR.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  const quoted = (): string => {
    i++; // opening quote
    let s = '';
    while (i < n && header[i] !== '"') {
      if (header[i] === '\\' && i + 1 < n) i++;
      s += header[i];
      i++;
    }
    i++; // closing quote (or end)
    return s;
  };
  while (i < n) {
    while (i < n && (header[i] === ',' || header[i] === ' ' || header[i] === '\t')) i++;
    if (i >= n) break;
    const scheme = token();
    if (scheme === '') {
      i++;
      continue;
    }
    const ch: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(ch);
    ws();
    const t68 = TOKEN68.exec(header.slice(i));
    if (t68 && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\s*=\s*[^=\s,]/.test(header.slice(i))) {
      ch.token68 = t68[0];
      i += t68[0].length;
      continue;
    }
    for (;;) {
      const save = i;
      ws();
      const name = token();
      ws();
      if (name === '' || header[i] !== '=') {
        i = save; // not a parameter: the next challenge starts here
        break;
      }
      i++;
      ws();
      const value = header[i] === '"' ? quoted() : token();
      ch.params[name.toLowerCase()] = value;
      ws();
      if (header[i] !== ',') break;
      i++;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Credentials

export type Credentials = { username: string; password: string } | { username?: string; identityToken: string };

export interface CredentialSource {
  /** Credentials for a registry name ("docker.io", "ghcr.io", "host:5000"); undefined when none. */
  lookup(registry: string): Credentials | undefined;
}

/** Docker's ConvertToHostname: "https://index.docker.io/v1/" -> "index.docker.io". */
export function credentialKeyHost(key: string): string {
  let s = key;
  if (s.startsWith('http://')) s = s.slice('http://'.length);
  else if (s.startsWith('https://')) s = s.slice('https://'.length);
  const slash = s.indexOf('/');
  return slash < 0 ? s : s.slice(0, slash);
}

const DOCKER_HUB_NAMES = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];
/** Where `docker login` stores Docker Hub credentials. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** Reads the `auths` section of a Docker config.json (credential helpers are not run). */
export class DockerConfigCredentials implements CredentialSource {
  private readonly entries = new Map<string, Credentials>();

  constructor(config: unknown, source = 'config.json') {
    if (config === null || typeof config !== 'object') throw invalidArgument('credentials', `${source}: not a JSON object`);
    const auths = (config as { auths?: unknown }).auths;
    if (auths === undefined) return;
    if (auths === null || typeof auths !== 'object' || Array.isArray(auths)) throw invalidArgument('credentials', `${source}: "auths" is not an object`);
    for (const [key, raw] of Object.entries(auths as Record<string, unknown>)) {
      const c = parseEntry(key, raw, source);
      if (c !== undefined) this.entries.set(key, c);
    }
  }

  /**
   * Loads `file`, or $DOCKER_CONFIG/config.json, or ~/.docker/config.json.
   * A missing file means no credentials; an unreadable or malformed one is
   * an error, since silently pulling anonymously would be confusing.
   */
  static async load(file?: string): Promise<DockerConfigCredentials> {
    const p = file ?? path.join(process.env['DOCKER_CONFIG'] ?? path.join(homedir(), '.docker'), 'config.json');
    let text: string;
    try {
      text = await readFile(p, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && file === undefined) return new DockerConfigCredentials({}, p);
      throw new LxrError('LXR_INVALID_ARGUMENT', `cannot read registry credentials ${p}: ${(e as Error).message}`, { field: 'credentials', cause: e });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw invalidArgument('credentials', `${p}: not valid JSON: ${(e as Error).message}`);
    }
    return new DockerConfigCredentials(json, p);
  }

  lookup(registry: string): Credentials | undefined {
    const hub = DOCKER_HUB_NAMES.includes(registry);
    // Exact keys win over keys that only normalise to the same host.
    for (const key of hub ? [DOCKER_HUB_KEY, ...DOCKER_HUB_NAMES] : [registry]) {
      const c = this.entries.get(key);
      if (c !== undefined) return { ...c };
    }
    for (const [key, c] of this.entries) {
      const host = credentialKeyHost(key);
      if (hub ? DOCKER_HUB_NAMES.includes(host) : host === registry) return { ...c };
    }
    return undefined;
  }
}

function parseEntry(key: string, raw: unknown, source: string): Credentials | undefined {
  if (raw === null || typeof raw !== 'object') throw invalidArgument('credentials', `${source}: auths[${JSON.stringify(key)}] is not an object`);
  const e = raw as AuthEntry;
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  let username = str(e.username);
  let password = str(e.password);
  const auth = str(e.auth);
  if (auth !== undefined) {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(auth) || colon < 0) {
      throw invalidArgument('credentials', `${source}: auths[${JSON.stringify(key)}].auth is not base64 of "user:password"`);
    }
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  const identityToken = str(e.identitytoken);
  if (identityToken !== undefined) return username !== undefined ? { username, identityToken } : { identityToken };
  if (username !== undefined && password !== undefined) return { username, password };
  return undefined;
}

/** Fixed credentials per registry name (tests, API-supplied credentials). */
export class StaticCredentials implements CredentialSource {
  constructor(private readonly map: Record<string, Credentials>) {}
  lookup(registry: string): Credentials | undefined {
    const c = Object.hasOwn(this.map, registry) ? this.map[registry] : undefined;
    return c === undefined ? undefined : { ...c };
  }
}

function basicHeader(c: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

// ---------------------------------------------------------------------------
// The token flow

/** Who is being talked to: the endpoint (cache key) and the name credentials are filed under. */
export interface AuthTarget {
  /** host[:port] actually contacted (a mirror's, or registry-1.docker.io). */
  host: string;
  /** The registry name credentials are looked up by ("docker.io", or the mirror's host). */
  registry: string;
}

export const pullScope = (repository: string): string => `repository:${repository}:pull`;

type HostScheme = { scheme: 'basic' } | { scheme: 'bearer'; realm: string; service?: string };

interface CachedToken {
  header: string;
  expires: number;
}

export interface RegistryAuthOptions {
  credentials?: CredentialSource | undefined;
  /** Sends a token request; the client passes its retrying sender. */
  send: HttpSend;
  now?: () => number;
}

/** The spec's default when a token response has no expires_in. */
const DEFAULT_TOKEN_SECONDS = 60;
/** Tokens are dropped a little early so a request never carries an expiring one. */
const EXPIRY_MARGIN_MS = 5_000;

export class RegistryAuth {
  /** Token requests made (observability; tests check caching with it). */
  tokenRequests = 0;
  private readonly schemes = new Map<string, HostScheme>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();
  private readonly now: () => number;

  constructor(private readonly opts: RegistryAuthOptions) {
    this.now = opts.now ?? Date.now;
  }

  private credentials(target: AuthTarget): Credentials | undefined {
    return this.opts.credentials?.lookup(target.registry);
  }

  /**
   * The Authorization header to send before any challenge, when an earlier
   * challenge from this host taught us its scheme (a Bearer token may be
   * fetched now, saving the 401 round trip). Undefined: send anonymously.
   */
  async authorization(target: AuthTarget, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const s = this.schemes.get(target.host);
    if (s === undefined) return undefined;
    if (s.scheme === 'basic') {
      const c = this.credentials(target);
      return c !== undefined && 'password' in c ? basicHeader(c) : undefined;
    }
    return (await this.token(target, s, [scope], signal)).header;
  }

  /** Forgets a token the registry refused (expired early, revoked). */
  invalidate(target: AuthTarget, scope: string): void {
    this.tokens.delete(tokenKey(target, [scope]));
  }

  /**
   * Answers a 401: picks a challenge we can meet (Bearer before Basic),
   * returns the header to retry with. LXR_PERMISSION_DENIED when no
   * challenge can be met with the credentials at hand.
   */
  async respond(target: AuthTarget, scope: string, wwwAuthenticate: string[], signal?: AbortSignal, plainHttpRegistry = false): Promise<string> {
    const challenges = wwwAuthenticate.flatMap(parseWwwAuthenticate);
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params['realm']);
    if (bearer !== undefined) {
      // Credentials go to the realm: over plain HTTP only when the registry
      // itself is reached that way (loopback or listed as insecure).
      if (bearer.params['realm']!.startsWith('http:') && !plainHttpRegistry) {
        throw new LxrError('LXR_PERMISSION_DENIED', `registry ${target.host} names a plain-HTTP token realm (${bearer.params['realm']}); refusing to send credentials there`);
      }
      const s: HostScheme = { scheme: 'bearer', realm: bearer.params['realm']!, ...(bearer.params['service'] !== undefined ? { service: bearer.params['service'] } : {}) };
      this.schemes.set(target.host, s);
      // The challenge's scope (what the registry says it needs) joins ours.
      const scopes = [scope];
      const extra = bearer.params['scope'];
      if (extra) for (const sc of extra.split(' ')) if (sc && !scopes.includes(sc)) scopes.push(sc);
      this.tokens.delete(tokenKey(target, scopes));
      return (await this.token(target, s, scopes, signal)).header;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      this.schemes.set(target.host, { scheme: 'basic' });
      const c = this.credentials(target);
      if (c === undefined || !('password' in c)) {
        throw new LxrError('LXR_PERMISSION_DENIED', `registry ${target.host} requires a user name and password (Basic auth) and none are configured for ${target.registry}`);
      }
      return basicHeader(c);
    }
    const offered = challenges.map((c) => c.scheme).join(', ') || 'no challenge';
    throw new LxrError('LXR_PERMISSION_DENIED', `registry ${target.host} requires authentication LXR cannot perform (WWW-Authenticate: ${offered})`);
  }

  private token(target: AuthTarget, s: Extract<HostScheme, { scheme: 'bearer' }>, scopes: string[], signal?: AbortSignal): Promise<CachedToken> {
    const key = tokenKey(target, scopes);
    const cached = this.tokens.get(key);
    if (cached !== undefined && cached.expires > this.now()) return Promise.resolve(cached);
    let p = this.pending.get(key);
    if (p === undefined) {
      p = this.fetchToken(target, s, scopes, signal)
        .then((t) => {
          this.tokens.set(key, t);
          return t;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async fetchToken(target: AuthTarget, s: Extract<HostScheme, { scheme: 'bearer' }>, scopes: string[], signal?: AbortSignal): Promise<CachedToken> {
    let url: URL;
    try {
      url = new URL(s.realm);
    } catch {
      throw new LxrError('LXR_PERMISSION_DENIED', `registry ${target.host} names an invalid token realm ${JSON.stringify(s.realm)}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new LxrError('LXR_PERMISSION_DENIED', `registry ${target.host} names a token realm that is not http(s): ${s.realm}`);
    }
    const creds = this.credentials(target);
    const who = creds?.username !== undefined ? `user ${JSON.stringify(creds.username)}` : creds !== undefined ? 'the identity token' : 'anonymous access';
    this.tokenRequests++;
    let res: HttpResponse;
    if (creds !== undefined && 'identityToken' in creds) {
      // OAuth2 refresh-token grant, as `docker login` identity tokens require.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'lxr', scope: scopes.join(' ') });
      if (s.service !== undefined) form.set('service', s.service);
      res = await this.opts.send({
        method: 'POST',
        url,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
        signal,
      });
    } else {
      if (s.service !== undefined) url.searchParams.set('service', s.service);
      for (const sc of scopes) url.searchParams.append('scope', sc);
      const headers: Record<string, string> = {};
      if (creds !== undefined) {
        url.searchParams.set('account', creds.username);
        headers['Authorization'] = basicHeader(creds);
      }
      res = await this.opts.send({ method: 'GET', url, headers, signal });
    }
    if (res.status === 401 || res.status === 403) {
      discard(res);
      throw new LxrError('LXR_PERMISSION_DENIED', `token server ${url.host} for registry ${target.host} refused ${who} (HTTP ${res.status})`);
    }
    if (res.status < 200 || res.status > 299) {
      discard(res);
      throw new LxrError(res.status >= 500 || res.status === 429 ? 'LXR_UNAVAILABLE' : 'LXR_PERMISSION_DENIED', `token server ${url.host} for registry ${target.host} answered HTTP ${res.status}`);
    }
    const body = await readBody(res, 1024 * 1024);
    let json: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      json = JSON.parse(body.toString('utf8')) as typeof json;
    } catch {
      throw new LxrError('LXR_PERMISSION_DENIED', `token server ${url.host} answered something that is not JSON`);
    }
    const token = typeof json.token === 'string' && json.token !== '' ? json.token : typeof json.access_token === 'string' ? json.access_token : '';
    if (token === '') throw new LxrError('LXR_PERMISSION_DENIED', `token server ${url.host} answered without a token`);
    const seconds = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : DEFAULT_TOKEN_SECONDS;
    return { header: `Bearer ${token}`, expires: this.now() + Math.max(seconds * 1000 - EXPIRY_MARGIN_MS, 1000) };
  }
}

function tokenKey(target: AuthTarget, scopes: string[]): string {
  return `${target.host}\n${[...scopes].sort().join(' ')}`;
}
