// The registry client's transport: one HTTP(S) request over node:http with a
// timeout that also covers stalls while a body streams, cancellation, and the
// error classification (transient or not) that retries are based on.

import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { LxrError } from '../../../proto/shared/errors.js';

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: Buffer;
  signal?: AbortSignal | undefined;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body, still streaming; read it, or destroy it to free the connection. */
  body: IncomingMessage;
  url: URL;
}

/** Sends one request; implemented by HttpTransport, replaceable in tests. */
export type HttpSend = (req: HttpRequest) => Promise<HttpResponse>;

export interface HttpTransportOptions {
  userAgent: string;
  /** Longest wait for a connection, the response headers, or the next body bytes. */
  timeoutMs: number;
}

/** Network-level failures that may succeed when tried again (ENOTFOUND is not: the name does not exist). */
const TRANSIENT_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET']);

export class NetworkError extends Error {
  constructor(
    message: string,
    readonly errno: string | undefined,
    readonly transient: boolean,
    options?: { cause: unknown },
  ) {
    super(message, options);
    this.name = 'NetworkError';
  }
}

function networkError(e: unknown, url: URL): NetworkError {
  const err = e as NodeJS.ErrnoException;
  const errno = err?.code;
  // "socket hang up" and "aborted" carry ECONNRESET; TLS protocol errors do
  // not, and retrying a handshake that cannot work only delays the answer.
  const transient = errno !== undefined && TRANSIENT_ERRNOS.has(errno);
  return new NetworkError(`${url.host}: ${err?.message ?? String(e)}`, errno, transient, { cause: e });
}

export class HttpTransport {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16 });

  constructor(private readonly opts: HttpTransportOptions) {}

  readonly send: HttpSend = (req) =>
    new Promise<HttpResponse>((resolve, reject) => {
      const { url } = req;
      if (req.signal?.aborted) {
        reject(req.signal.reason ?? new Error('aborted'));
        return;
      }
      const isHttps = url.protocol === 'https:';
      const mod = isHttps ? https : http;
      const headers: Record<string, string> = { 'User-Agent': this.opts.userAgent, ...req.headers };
      if (req.body !== undefined) headers['Content-Length'] = String(req.body.length);
      const r = mod.request(url, {
        method: req.method,
        headers,
        agent: isHttps ? this.httpsAgent : this.httpAgent,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      let settled = false;
      r.setTimeout(this.opts.timeoutMs, () => {
        const e = Object.assign(new Error(`no response for ${this.opts.timeoutMs} ms`), { code: 'ETIMEDOUT' });
        r.destroy(e);
      });
      r.on('error', (e) => {
        if (settled) return;
        settled = true;
        reject(req.signal?.aborted ? (req.signal.reason ?? e) : networkError(e, url));
      });
      r.on('response', (res) => {
        settled = true;
        // Errors while the body streams reach the reader, classified the same way.
        res.on('error', () => {});
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url });
      });
      r.end(req.body);
    });

  /** Closes idle keep-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** Reads a whole (small) body, failing past `limit` bytes. */
export async function readBody(res: HttpResponse, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      n += chunk.length;
      if (n > limit) {
        res.body.destroy();
        throw new LxrError('LXR_INVALID_ARGUMENT', `response from ${res.url.host} is over the ${limit}-byte limit`, { field: 'size' });
      }
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof LxrError) throw e;
    throw networkError(e, res.url);
  }
  return Buffer.concat(chunks);
}

/** Drains and discards a body so its connection can be reused. */
export function discard(res: HttpResponse): void {
  res.body.resume();
}

export function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** All values of a repeatable header, unjoined (WWW-Authenticate may repeat). */
export function headerValues(res: HttpResponse, name: string): string[] {
  const out: string[] = [];
  const raw = res.body.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name.toLowerCase()) out.push(raw[i + 1]!);
  return out;
}
