// The registry HTTP API v2 client (distribution spec): manifest negotiation
// and platform choice, verified blob downloads into the BlobStore, auth,
// retries with backoff, mirrors, and plain HTTP for registries allowed it.
//
// Plain HTTP: as Docker does, a registry on a loopback address (localhost,
// 127.0.0.0/8, ::1) may be spoken to over plain HTTP, as may any registry
// listed in `insecure`; everything else is HTTPS. Unlike Docker, an insecure
// registry is not first tried over TLS: the operator said it is plain HTTP.

import { Readable } from 'node:stream';
import { LxrError, invalidArgument } from '../../../proto/shared/errors.js';
import type { BlobStore, IngestResult } from '../blob-store.js';
import { type Digest, digestMismatch, digestOf, isDigest, parseDigest, sizeMismatch } from '../digest.js';
import { parseReference, type Reference, referenceString, registryEndpoint, withDefaultTag } from '../reference.js';
import { type AuthTarget, type CredentialSource, pullScope, RegistryAuth } from './auth.js';
import { discard, header, headerValues, type HttpRequest, type HttpResponse, type HttpSend, HttpTransport, NetworkError, readBody } from './http.js';
import { type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, parseManifest } from './manifest.js';
import { MANIFEST_ACCEPT } from './mediatypes.js';
import { hostPlatform, type Platform, platformString, selectPlatform } from './platform.js';

export interface RegistryClientOptions {
  credentials?: CredentialSource | undefined;
  /** Per registry name ("docker.io"): mirror URLs or host[:port]s, tried in order before the registry itself. */
  mirrors?: Record<string, string[]>;
  /** Registries (host or host:port) reached over plain HTTP. Loopback registries always may. */
  insecure?: string[];
  /** Extra attempts after a transient failure (network error, 429, 5xx). Default 3. */
  retries?: number;
  /** First backoff; doubles per attempt, with full jitter, capped at maxBackoffMs. Default 500. */
  backoffMs?: number;
  maxBackoffMs?: number;
  userAgent?: string;
  /** Longest wait for a connection, response headers, or the next body bytes. Default 30 s. */
  timeoutMs?: number;
  /** Platform to pick from indexes. Default: the host's (linux + its architecture). */
  platform?: Platform;
  /** Largest manifest accepted. Default 4 MiB, Docker's limit. */
  manifestLimit?: number;
  /** Replaces the transport (tests). */
  send?: HttpSend;
}

export interface FetchedManifest {
  digest: Digest;
  mediaType: string;
  size: number;
  /** The exact bytes: their digest is the manifest's identity. */
  bytes: Buffer;
  /** The registry's Docker-Content-Digest header, when it sent one. */
  dockerContentDigest?: string;
  document: { kind: 'index'; index: ImageIndex } | { kind: 'manifest'; manifest: ImageManifest };
}

export interface ResolvedImage {
  /** The reference, normalised and defaulted to :latest. */
  reference: Reference;
  /** What the reference points at: the index's digest for multi-platform images. */
  digest: Digest;
  mediaType: string;
  /** Set when the reference named an index / manifest list. */
  index?: { digest: Digest; mediaType: string; size: number; index: ImageIndex };
  /** The platform-specific image manifest. */
  manifestDigest: Digest;
  manifestMediaType: string;
  manifestSize: number;
  manifest: ImageManifest;
  config: Descriptor;
  layers: Descriptor[];
  /** The platform chosen from the index; for a single manifest, the one requested. */
  platform: Platform;
}

export interface ResolveOptions {
  signal?: AbortSignal | undefined;
  platform?: Platform | undefined;
  /** When given, the index and manifest bytes are stored in it too. */
  store?: BlobStore | undefined;
}

export interface FetchBlobOptions {
  onProgress?(done: number, total?: number): void;
  signal?: AbortSignal | undefined;
}

/** One place a registry's API is served: the registry itself or a mirror. */
export interface Endpoint {
  /** scheme://host[:port][/prefix] */
  base: URL;
  auth: AuthTarget;
  mirror: boolean;
}

const MAX_REDIRECTS = 5;
const DEFAULT_MANIFEST_LIMIT = 4 * 1024 * 1024;
/** A Retry-After further out than this is not waited for: the pull fails instead. */
const MAX_RETRY_AFTER_MS = 60_000;

/** localhost, 127.0.0.0/8, ::1: Docker's implicit insecure registries. */
export function isLoopbackHost(hostPort: string): boolean {
  let host = hostPort;
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']'));
  else if (host.includes(':')) host = host.slice(0, host.lastIndexOf(':'));
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function hostOnly(hostPort: string): string {
  if (hostPort.startsWith('[')) return hostPort.slice(0, hostPort.indexOf(']') + 1);
  const c = hostPort.lastIndexOf(':');
  return c < 0 ? hostPort : hostPort.slice(0, c);
}

/** The scheme for a registry: plain HTTP only for loopback and listed ones (host or host:port). */
export function registryScheme(hostPort: string, insecure: readonly string[]): 'http' | 'https' {
  if (isLoopbackHost(hostPort)) return 'http';
  return insecure.includes(hostPort) || insecure.includes(hostOnly(hostPort)) ? 'http' : 'https';
}

/** Delay before retry `attempt` (0-based): Retry-After when given, else full-jitter exponential backoff. */
export function retryDelay(attempt: number, base: number, cap: number, retryAfter?: string, now = Date.now(), random = Math.random): number {
  if (retryAfter !== undefined) {
    const s = retryAfter.trim();
    const ms = /^\d+$/.test(s) ? Number(s) * 1000 : Date.parse(s) - now;
    if (Number.isFinite(ms)) return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
  }
  return Math.floor(random() * Math.min(cap, base * 2 ** attempt));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelledError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(cancelledError(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const cancelledError = (signal: AbortSignal): LxrError => new LxrError('LXR_UNAVAILABLE', 'pull cancelled', { cause: signal.reason });

const transientStatus = (s: number): boolean => s === 429 || s === 408 || (s >= 500 && s !== 501 && s !== 505);

/** "MANIFEST_UNKNOWN: manifest unknown; ..." from a distribution error body, if it is one. */
function registryErrors(body: Buffer): string {
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    if (!Array.isArray(j.errors)) return '';
    return j.errors
      .map((e) => [e.code, e.message].filter((x) => typeof x === 'string' && x !== '').join(': '))
      .filter((s) => s !== '')
      .join('; ');
  } catch {
    return '';
  }
}

export class RegistryClient {
  readonly platform: Platform;
  private readonly transport: HttpTransport | undefined;
  private readonly sendRaw: HttpSend;
  private readonly auth: RegistryAuth;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly manifestLimit: number;
  private readonly insecure: string[];
  private readonly mirrors: Record<string, string[]>;

  constructor(private readonly opts: RegistryClientOptions = {}) {
    this.platform = opts.platform ?? hostPlatform();
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 10_000;
    this.manifestLimit = opts.manifestLimit ?? DEFAULT_MANIFEST_LIMIT;
    this.insecure = opts.insecure ?? [];
    this.mirrors = opts.mirrors ?? {};
    if (opts.send !== undefined) {
      this.sendRaw = opts.send;
    } else {
      this.transport = new HttpTransport({ userAgent: opts.userAgent ?? 'lxr/0.1', timeoutMs: opts.timeoutMs ?? 30_000 });
      this.sendRaw = this.transport.send;
    }
    this.auth = new RegistryAuth({ credentials: opts.credentials, send: (r) => this.sendRetrying(r) });
  }

  /** Token requests made so far (tests check caching with it). */
  get tokenRequests(): number {
    return this.auth.tokenRequests;
  }

  /** Closes idle connections. */
  close(): void {
    this.transport?.close();
  }

  /** Where to send requests for `registry`: its mirrors, then the registry itself. */
  endpoints(registry: string): Endpoint[] {
    const out: Endpoint[] = [];
    for (const m of this.mirrors[registry] ?? []) {
      let base: URL;
      try {
        base = new URL(m.includes('://') ? m : `${registryScheme(m, this.insecure)}://${m}`);
      } catch {
        throw invalidArgument('mirrors', `mirror ${JSON.stringify(m)} for ${registry} is not a URL or host[:port]`);
      }
      out.push({ base, auth: { host: base.host, registry: base.host }, mirror: true });
    }
    const host = registryEndpoint(registry);
    const scheme = registryScheme(registry, this.insecure) === 'http' || registryScheme(host, this.insecure) === 'http' ? 'http' : 'https';
    out.push({ base: new URL(`${scheme}://${host}`), auth: { host, registry }, mirror: false });
    return out;
  }

  // -------------------------------------------------------------------------
  // Transport with retries, redirects and auth

  /** One request, retried on network errors, 429 and 5xx with backoff (honouring Retry-After). */
  private async sendRetrying(req: HttpRequest): Promise<HttpResponse> {
    for (let attempt = 0; ; attempt++) {
      let res: HttpResponse;
      try {
        res = await this.sendRaw(req);
      } catch (e) {
        if (req.signal?.aborted) throw cancelledError(req.signal);
        if (e instanceof NetworkError) {
          if (e.transient && attempt < this.retries) {
            await sleep(retryDelay(attempt, this.backoffMs, this.maxBackoffMs), req.signal);
            continue;
          }
          const tries = attempt + 1;
          throw new LxrError('LXR_UNAVAILABLE', `registry ${req.url.host} unreachable${tries > 1 ? ` after ${tries} attempts` : ''}: ${e.message}`, {
            cause: e,
            ...(e.errno !== undefined ? { errno: e.errno } : {}),
          });
        }
        throw e;
      }
      if (transientStatus(res.status) && attempt < this.retries) {
        const retryAfter = header(res, 'retry-after');
        const delay = retryDelay(attempt, this.backoffMs, this.maxBackoffMs, retryAfter);
        if (retryAfter === undefined || delay < MAX_RETRY_AFTER_MS) {
          discard(res);
          await sleep(delay, req.signal);
          continue;
        }
      }
      return res;
    }
  }

  /** Follows redirects (blobs live in object storage); credentials never leave the origin. */
  private async sendFollowing(req: HttpRequest): Promise<HttpResponse> {
    let cur = req;
    for (let hop = 0; ; hop++) {
      const res = await this.sendRetrying(cur);
      const location = header(res, 'location');
      // The final response is stamped with the URL we asked for: what the
      // auth check below trusts is our own redirect chain, not the transport.
      if (![301, 302, 303, 307, 308].includes(res.status) || location === undefined) return { ...res, url: cur.url };
      discard(res);
      if (hop >= MAX_REDIRECTS) throw new LxrError('LXR_UNAVAILABLE', `registry ${req.url.host}: more than ${MAX_REDIRECTS} redirects for ${req.url.pathname}`);
      const next = new URL(location, cur.url);
      const headers = { ...cur.headers };
      if (next.origin !== req.url.origin) delete headers['Authorization'];
      cur = { ...cur, url: next, headers, ...(res.status === 303 ? { method: 'GET', body: undefined } : {}) };
    }
  }

  /**
   * A request to a registry endpoint for `scope`, authenticated: the cached
   * credentials first, and one retry answering a 401's challenge.
   */
  async request(ep: Endpoint, scope: string, method: string, pathAndQuery: string, opts: { headers?: Record<string, string>; body?: Buffer; signal?: AbortSignal | undefined } = {}): Promise<HttpResponse> {
    const url = new URL(ep.base.pathname.replace(/\/$/, '') + pathAndQuery, ep.base);
    let authorization = await this.auth.authorization(ep.auth, scope, opts.signal);
    for (let answered = false; ; answered = true) {
      const headers = { ...opts.headers, ...(authorization !== undefined ? { Authorization: authorization } : {}) };
      const res = await this.sendFollowing({ method, url, headers, ...(opts.body !== undefined ? { body: opts.body } : {}), signal: opts.signal });
      if (res.status !== 401 || answered) return res;
      // Only the registry itself may ask for credentials: a 401 from where a
      // redirect led (blob storage, or an attacker's server) is never
      // answered, or it could send our credentials to a realm of its choosing.
      if (res.url.origin !== url.origin) return res;
      const challenges = headerValues(res, 'www-authenticate');
      discard(res);
      this.auth.invalidate(ep.auth, scope);
      authorization = await this.auth.respond(ep.auth, scope, challenges, opts.signal, ep.base.protocol === 'http:');
    }
  }

  /** Maps a failed response to the error catalogue, with the registry's own error codes. */
  private async failure(res: HttpResponse, ep: Endpoint, what: string): Promise<never> {
    const body = await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0));
    const detail = registryErrors(body);
    const status = `HTTP ${res.status}${detail ? ` ${detail}` : ''}`;
    const where = `${ep.mirror ? 'mirror' : 'registry'} ${ep.base.host}`;
    if (res.status === 401 || res.status === 403) {
      const creds = this.opts.credentials?.lookup(ep.auth.registry);
      const who = creds === undefined ? `anonymously (no credentials configured for ${ep.auth.registry})` : creds.username !== undefined ? `as user ${JSON.stringify(creds.username)}` : 'with an identity token';
      throw new LxrError('LXR_PERMISSION_DENIED', `${where} denied access to ${what} ${who}: ${status}`);
    }
    if (res.status === 404) throw new LxrError('LXR_NOT_FOUND', `${what} not found on ${where}${detail ? ` (${detail})` : ''}`);
    if (transientStatus(res.status)) {
      throw new LxrError('LXR_UNAVAILABLE', `${where} failed ${what}: ${status}${this.retries > 0 ? ` after ${this.retries + 1} attempts` : ''}`);
    }
    if (res.status >= 400 && res.status < 500) throw new LxrError('LXR_INVALID_ARGUMENT', `${where} refused ${what}: ${status}`);
    throw new LxrError('LXR_UNAVAILABLE', `${where} answered ${what} with unexpected ${status}`);
  }

  /** Runs `op` on each endpoint (mirrors first) until one succeeds; the registry's own error wins. */
  private async onEndpoints<T>(registry: string, signal: AbortSignal | undefined, op: (ep: Endpoint) => Promise<T>): Promise<T> {
    const eps = this.endpoints(registry);
    for (let i = 0; ; i++) {
      try {
        return await op(eps[i]!);
      } catch (e) {
        // A mirror failing for any reason (missing content, down, refusing)
        // falls back to the registry, as Docker and containerd do.
        if (signal?.aborted || i === eps.length - 1) throw e;
      }
    }
  }

  // -------------------------------------------------------------------------
  // Manifests

  /**
   * Fetches the manifest or index `tagOrDigest` of `ref`'s repository,
   * accepting OCI and Docker schema 2 types. Fetched by digest, the bytes
   * must hash to it; by tag, they must match Docker-Content-Digest if sent.
   */
  async fetchManifest(ref: Reference, tagOrDigest: string, opts: { signal?: AbortSignal | undefined; expectedSize?: number } = {}): Promise<FetchedManifest> {
    const byDigest = isDigest(tagOrDigest);
    const what = `manifest ${ref.registry}/${ref.repository}${byDigest ? '@' : ':'}${tagOrDigest}`;
    return this.onEndpoints(ref.registry, opts.signal, async (ep) => {
      const res = await this.request(ep, pullScope(ref.repository), 'GET', `/v2/${ref.repository}/manifests/${tagOrDigest}`, {
        headers: { Accept: MANIFEST_ACCEPT.join(', ') },
        signal: opts.signal,
      });
      if (res.status !== 200) return this.failure(res, ep, what);
      const bytes = await readBody(res, this.manifestLimit).catch((e: unknown) => {
        throw e instanceof NetworkError ? new LxrError('LXR_UNAVAILABLE', `reading ${what}: ${e.message}`, { cause: e }) : e;
      });
      const dcd = header(res, 'docker-content-digest');
      let digest: Digest;
      if (byDigest) {
        digest = digestOf(bytes, parseDigest(tagOrDigest).algorithm);
        if (digest !== tagOrDigest) throw digestMismatch(tagOrDigest, digest);
      } else {
        const algorithm = dcd !== undefined && isDigest(dcd) ? parseDigest(dcd).algorithm : 'sha256';
        digest = digestOf(bytes, algorithm);
        if (dcd !== undefined && isDigest(dcd) && dcd !== digest) throw digestMismatch(dcd, digest);
      }
      if (opts.expectedSize !== undefined && bytes.length !== opts.expectedSize) throw sizeMismatch(digest, opts.expectedSize, String(bytes.length));
      const doc = parseManifest(bytes, header(res, 'content-type'), what);
      return {
        digest,
        mediaType: doc.mediaType,
        size: bytes.length,
        bytes,
        ...(dcd !== undefined ? { dockerContentDigest: dcd } : {}),
        document: doc.kind === 'index' ? { kind: 'index', index: doc.index } : { kind: 'manifest', manifest: doc.manifest },
      };
    });
  }

  /**
   * Resolves a reference to one platform's image manifest: fetches what the
   * tag or digest names; for an index or manifest list, picks the platform
   * (options, else the client's) and fetches that manifest by digest.
   */
  async resolve(ref: string | Reference, opts: ResolveOptions = {}): Promise<ResolvedImage> {
    const r = withDefaultTag(typeof ref === 'string' ? parseReference(ref) : ref);
    const want = opts.platform ?? this.platform;
    const top = await this.fetchManifest(r, r.digest ?? r.tag!, { signal: opts.signal });
    let manifest: FetchedManifest = top;
    let index: ResolvedImage['index'];
    let platform = want;
    if (top.document.kind === 'index') {
      index = { digest: top.digest, mediaType: top.mediaType, size: top.size, index: top.document.index };
      const chosen = selectPlatform(top.document.index.manifests, want, `image ${referenceString(r)}`);
      platform = { ...chosen.platform! };
      manifest = await this.fetchManifest(r, chosen.digest, { signal: opts.signal, expectedSize: chosen.size });
      if (manifest.document.kind !== 'manifest') {
        throw new LxrError('LXR_UNSUPPORTED', `image ${referenceString(r)}: the entry for ${platformString(want)} (${chosen.digest}) is itself an index; nested indexes are not supported`, { field: 'manifest' });
      }
    }
    const m = (manifest.document as { manifest: ImageManifest }).manifest;
    if (opts.store !== undefined) {
      for (const f of index !== undefined ? [top, manifest] : [manifest]) {
        await opts.store.ingest(f.digest, f.size, () => Readable.from([f.bytes]), { ...(opts.signal ? { signal: opts.signal } : {}) });
      }
    }
    return {
      reference: r,
      digest: top.digest,
      mediaType: top.mediaType,
      ...(index !== undefined ? { index } : {}),
      manifestDigest: manifest.digest,
      manifestMediaType: manifest.mediaType,
      manifestSize: manifest.size,
      manifest: m,
      config: m.config,
      layers: m.layers,
      platform,
    };
  }

  // -------------------------------------------------------------------------
  // Blobs

  /** Opens a blob's byte stream (after redirects); the caller verifies it. */
  private openBlob(ref: Reference, digest: Digest, signal: AbortSignal | undefined): Promise<Readable> {
    const what = `blob ${digest} of ${ref.registry}/${ref.repository}`;
    return this.onEndpoints(ref.registry, signal, async (ep) => {
      const res = await this.request(ep, pullScope(ref.repository), 'GET', `/v2/${ref.repository}/blobs/${digest}`, { signal });
      if (res.status !== 200) return this.failure(res, ep, what);
      return res.body;
    });
  }

  /**
   * Downloads a blob into `store`, which verifies digest and size while it
   * streams: nothing unverified ever lands. A connection lost mid-body is
   * retried from the start (up to `retries` times); a digest mismatch is not.
   */
  async fetchBlob(ref: Reference, digest: Digest, size: number | undefined, store: BlobStore, opts: FetchBlobOptions = {}): Promise<IngestResult> {
    parseDigest(digest);
    for (let attempt = 0; ; attempt++) {
      try {
        return await store.ingest(digest, size, (signal) => this.openBlob(ref, digest, signal), {
          ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
      } catch (e) {
        // The store reports a stream that broke mid-body as UNAVAILABLE
        // wrapping a plain error; our own UNAVAILABLE errors were retried already.
        const midStream = e instanceof LxrError && e.reason === 'LXR_UNAVAILABLE' && e.cause !== undefined && !(e.cause instanceof LxrError);
        if (opts.signal?.aborted || !midStream || attempt >= this.retries) throw e;
        await sleep(retryDelay(attempt, this.backoffMs, this.maxBackoffMs), opts.signal);
      }
    }
  }

  /** Fetches the image config (through the store, so it is verified and kept) and parses it. */
  async fetchConfig(ref: Reference, config: Pick<Descriptor, 'digest' | 'size'>, store: BlobStore, opts: FetchBlobOptions = {}): Promise<ImageConfig> {
    await this.fetchBlob(ref, config.digest, config.size, store, opts);
    const c = await store.readJson<ImageConfig>(config.digest);
    if (c === null || typeof c !== 'object' || typeof c.rootfs !== 'object' || c.rootfs === null || !Array.isArray(c.rootfs.diff_ids)) {
      throw new LxrError('LXR_INVALID_ARGUMENT', `image config ${config.digest} of ${ref.registry}/${ref.repository} has no rootfs.diff_ids`, { field: 'config' });
    }
    return c;
  }

  /** Whether a blob exists in the repository (HEAD, no download). */
  async hasBlob(ref: Reference, digest: Digest, signal?: AbortSignal): Promise<boolean> {
    parseDigest(digest);
    return this.onEndpoints(ref.registry, signal, async (ep) => {
      const res = await this.request(ep, pullScope(ref.repository), 'HEAD', `/v2/${ref.repository}/blobs/${digest}`, { signal });
      discard(res);
      if (res.status === 200) return true;
      // A mirror lacking the blob is no answer: the registry itself is asked.
      if (res.status === 404 && !ep.mirror) return false;
      return this.failure(res, ep, `blob ${digest}`);
    });
  }
}
