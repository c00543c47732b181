// The controller's HTTPS side for browsers: each workspace under /w/NAME/:
// the web terminal (/w/NAME/terminal) and the workspace's ports
// (/w/NAME/ports/PORT/..., HTTP and WebSocket, through the host's agent);
// and, for a workspace with an IDE, everything else under /w/NAME/ is the
// IDE (code-server, on the workspace's IDE_PORT), with /w/NAME/ stripped:
// code-server's URLs are all relative, so it needs no base path. Nothing is
// served without a credential for that workspace: a signed link from `lxrctl open` (traded for a cookie
// scoped to /w/NAME/), that cookie, or a person's bearer token. TLS uses the
// controller's certificate (renewed in place: see setCertificate).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { ContainersClient, ExecClient } from '../../proto/shared/api.js';
import { tunnelDuplex } from '../../proto/shared/tunnel.js';
import { parseListen } from '../../proto/shared/metrics-http.js';
import type { Logger } from '../../proto/shared/log.js';
import { isDnsLabel } from '../../proto/shared/names.js';
import { IDE_PORT } from '../../proto/shared/ide.js';
import { bridgeTerminal } from './terminal-bridge.js';
import { terminalPage } from './terminal-page.js';
import type { WebLinks } from './web-links.js';

/** How long a cookie from a link lasts. */
const COOKIE_TTL = 12 * 3600;
const COOKIE = 'lxr_w';
/** Browser-to-workspace WebSocket data at least this big counts as a person's activity. */
const ACTIVE_CHUNK = 64;

/** The controller's own pages under /w/NAME/ (GET only; ports/ and the IDE take any method). */
const ownPage = (rest: string): boolean => rest === 'terminal' || rest.startsWith('terminal/') || rest.startsWith('assets/');
/** /w/NAME/ports/PORT[/PATH]. */
const PORT_PATH = /^ports\/(\d{1,5})(\/.*)?$/;
/** Hop-by-hop headers: they are about one connection, not passed through a proxy. */
const HOP_BY_HOP = ['connection', 'keep-alive'];
const withoutHopByHop = (h: IncomingHttpHeaders): IncomingHttpHeaders => Object.fromEntries(Object.entries(h).filter(([k]) => !HOP_BY_HOP.includes(k)));

const require = createRequire(import.meta.url);
const ASSETS: Record<string, { file: string; type: string }> = {
  'xterm.mjs': { file: require.resolve('@xterm/xterm/lib/xterm.mjs'), type: 'text/javascript' },
  'xterm.css': { file: require.resolve('@xterm/xterm/css/xterm.css'), type: 'text/css' },
  'addon-fit.mjs': { file: require.resolve('@xterm/addon-fit/lib/addon-fit.mjs'), type: 'text/javascript' },
};

export interface WebServerOptions {
  /** HOST:PORT (port 0: any free one). */
  listen: string;
  certPem: string;
  keyPem: string;
  links: WebLinks;
  /** A person's bearer token is good (throws or returns false otherwise). */
  operatorToken: (authorization: string) => boolean;
  /** What a person did in a workspace (idle detection). */
  onActivity?: (workspace: string, kind: string) => void;
  /** The workspace's IDE ("" = none); throws when there is no such workspace. */
  ideOf: (workspace: string) => string;
  /** The clients of the workspace's host; throws (with a message for the page) when it cannot do `op`. */
  hostOf: (workspace: string, op: string) => { exec: ExecClient; containers: ContainersClient };
  log: Logger;
}

export interface WebServer {
  address: string;
  setCertificate(certPem: string, keyPem: string): void;
  close(): Promise<void>;
}

const cookieOf = (req: IncomingMessage): string | undefined =>
  (req.headers.cookie ?? '')
    .split(/;\s*/)
    .map((c) => c.split('='))
    .find(([k]) => k === COOKIE)?.[1];

function deny(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`${message}\n`);
}

export async function startWebServer(o: WebServerOptions): Promise<WebServer> {
  const server = https.createServer({ cert: o.certPem, key: o.keyPem });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });

  /** The workspace a path is under, and the rest of the path. */
  const route = (url: URL): { workspace: string; rest: string } | null => {
    const m = /^\/w\/([^/]+)\/(.*)$/.exec(url.pathname);
    return m && isDnsLabel(m[1]!) ? { workspace: m[1]!, rest: m[2]! } : null;
  };
  /** The workspace's IDE ("" = none), or why there is nothing to serve (no such workspace). */
  const ideLookup = (workspace: string): { ide: string } | { missing: string } => {
    try {
      return { ide: o.ideOf(workspace) };
    } catch (e) {
      return { missing: (e as Error).message };
    }
  };
  /** Null when the request may see the workspace; else why not. */
  const refusal = (req: IncomingMessage, workspace: string): string | null => {
    const auth = req.headers.authorization;
    if (auth) {
      try {
        return o.operatorToken(auth) ? null : 'the credential is not accepted';
      } catch (e) {
        return (e as Error).message;
      }
    }
    return o.links.check(cookieOf(req), 'cookie', workspace);
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'https://lxr');
    const r = route(url);
    if (!r) {
      // /w/NAME -> /w/NAME/: the IDE's relative URLs need the slash.
      const bare = /^\/w\/([^/]+)$/.exec(url.pathname)?.[1];
      if (bare && isDnsLabel(bare)) {
        res.writeHead(301, { location: `/w/${bare}/${url.search}` });
        return res.end();
      }
      return deny(res, 404, 'not found: workspaces are under /w/NAME/');
    }
    const own = ownPage(r.rest);
    if (own && req.method !== 'GET' && req.method !== 'HEAD') return deny(res, 405, 'only GET here');
    // Links are made for the workspace's root and its terminal (Workspaces.Open); elsewhere ?link= is the app's.
    const link = r.rest === '' || r.rest === 'terminal' ? url.searchParams.get('link') : null;
    if (link !== null && (req.method === 'GET' || req.method === 'HEAD')) {
      const bad = o.links.check(link, 'link', r.workspace);
      if (bad) return deny(res, 401, bad);
      // Trade the link for a cookie of this workspace's path, and drop it from the address bar.
      res.writeHead(303, {
        location: url.pathname,
        'set-cookie': `${COOKIE}=${o.links.sign('cookie', r.workspace, COOKIE_TTL)}; Path=/w/${r.workspace}/; Max-Age=${COOKIE_TTL}; HttpOnly; Secure; SameSite=Strict`,
        'cache-control': 'no-store',
      });
      return res.end();
    }
    const bad = refusal(req, r.workspace);
    if (bad) return deny(res, 401, `${bad} (lxrctl open ${r.workspace} prints a link)`);
    const port = PORT_PATH.exec(r.rest);
    if (port) return proxyPort(req, res, r.workspace, Number(port[1]), port[2] ?? '', url.search);
    if (!own) {
      const l = ideLookup(r.workspace);
      if ('missing' in l) return deny(res, 404, l.missing);
      if (l.ide) return proxyHttp(req, res, r.workspace, IDE_PORT, `/${r.rest}${url.search}`, 'ide', 'its IDE (it may still be starting)');
      if (r.rest === '') {
        res.writeHead(303, { location: `/w/${r.workspace}/terminal` });
        return res.end();
      }
    }
    if (r.rest === 'terminal') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'" });
      return res.end(terminalPage(r.workspace));
    }
    const asset = /^assets\/([a-z.-]+)$/.exec(r.rest)?.[1];
    if (asset && ASSETS[asset]) {
      res.writeHead(200, { 'content-type': ASSETS[asset].type, 'cache-control': 'private, max-age=3600' });
      return res.end(readFileSync(ASSETS[asset].file));
    }
    deny(res, 404, `not found: /w/${r.workspace}/${r.rest}`);
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'https://lxr');
    const r = route(url);
    const refuse = (status: number, message: string): void => {
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Not Found'}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${message}\n`);
    };
    if (!r) return refuse(404, 'not found');
    const bad = refusal(req, r.workspace);
    if (bad) return refuse(401, bad);
    const port = PORT_PATH.exec(r.rest);
    if (port) return proxyUpgrade(req, socket, head, r.workspace, Number(port[1]), `${port[2] || '/'}${url.search}`, `port ${port[1]}`);
    if (r.rest !== 'terminal/ws') {
      const l = ideLookup(r.workspace);
      if (!('ide' in l) || !l.ide) return refuse(404, 'not found');
      return proxyUpgrade(req, socket, head, r.workspace, IDE_PORT, `/${r.rest}${url.search}`, 'ide');
    }
    const num = (k: string, d: number): number => {
      const v = Number(url.searchParams.get(k));
      return Number.isInteger(v) && v > 0 && v < 1000 ? v : d;
    };
    wss.handleUpgrade(req, socket, head, (ws) => {
      let exec: ExecClient;
      try {
        exec = o.hostOf(r.workspace, 'exec in').exec;
      } catch (e) {
        ws.send(JSON.stringify({ type: 'error', message: (e as Error).message }));
        ws.close(1011);
        return;
      }
      const session = url.searchParams.get('session') ?? undefined;
      bridgeTerminal(ws, { workspace: r.workspace, exec, ...(session ? { session } : {}), rows: num('rows', 24), cols: num('cols', 80), onInput: () => o.onActivity?.(r.workspace, 'web terminal input'), log: o.log });
    });
  });

  /** A tunnel to the workspace's port through its host's agent; its failure is the Duplex's error. */
  const tunnel = (workspace: string, port: number) => {
    const stream = o.hostOf(workspace, 'forward a port of').containers.PortForward();
    stream.write({ start: { container: workspace, port } });
    return tunnelDuplex(stream);
  };

  /** What goes on to the workspace: not the controller's own credential. */
  const forwardHeaders = (h: IncomingHttpHeaders): IncomingHttpHeaders => {
    const out: IncomingHttpHeaders = { ...h };
    delete out.authorization;
    const cookies = (h.cookie ?? '').split(/;\s*/).filter((c) => c && !c.startsWith(`${COOKIE}=`));
    if (cookies.length) out.cookie = cookies.join('; ');
    else delete out.cookie;
    return out;
  };

  function proxyPort(req: IncomingMessage, res: ServerResponse, workspace: string, port: number, rest: string, search: string): void {
    // /w/NAME/ports/8080 -> /w/NAME/ports/8080/: the app's relative links need the slash.
    if (rest === '') {
      res.writeHead(301, { location: `/w/${workspace}/ports/${port}/${search}` });
      res.end();
      return;
    }
    proxyHttp(req, res, workspace, port, rest + search, `port ${port}`, `port ${port}`);
  }

  /** One HTTP request to the workspace's port, through a tunnel; `activity` is what it counts as, `what` names it in a 502. */
  function proxyHttp(req: IncomingMessage, res: ServerResponse, workspace: string, port: number, target: string, activity: string, what: string): void {
    let t: ReturnType<typeof tunnel>;
    try {
      t = tunnel(workspace, port);
    } catch (e) {
      return deny(res, 502, (e as Error).message);
    }
    o.onActivity?.(workspace, activity);
    // One tunnel per request: it ends with the response (a kept-alive connection would hold it open).
    const up = httpRequest({ createConnection: () => t as never, method: req.method, path: target, headers: { ...withoutHopByHop(forwardHeaders(req.headers)), connection: 'close' } });
    up.on('response', (r) => {
      res.writeHead(r.statusCode ?? 502, withoutHopByHop(r.headers));
      r.pipe(res);
    });
    res.on('close', () => t.destroy());
    const failed = (e: Error): void => {
      if (!res.headersSent) deny(res, 502, `workspace ${workspace}, ${what}: ${e.message}`);
      else res.destroy();
    };
    up.on('error', failed);
    t.on('error', failed);
    req.pipe(up);
  }

  /**
   * A WebSocket (or any upgrade) to the workspace's port, through a tunnel.
   * The browser's Host and Origin go on unchanged (code-server checks that
   * they agree). What the browser sends counts as activity, except frames
   * too small to be a person's doing (VS Code's keepalives and acks are
   * about 20 bytes on the wire): an open tab alone does not keep a workspace up.
   */
  function proxyUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, workspace: string, port: number, target: string, activity: string): void {
    let t: ReturnType<typeof tunnel>;
    try {
      t = tunnel(workspace, port);
    } catch (e) {
      socket.end(`HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\n\r\n${(e as Error).message}\n`);
      return;
    }
    const headers = forwardHeaders(req.headers);
    const lines = [`${req.method ?? 'GET'} ${target} HTTP/1.1`];
    for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined) lines.push(`${k}: ${x}`);
    t.write(lines.join('\r\n') + '\r\n\r\n');
    if (head.length) t.write(head);
    o.onActivity?.(workspace, activity);
    socket.on('data', (d: Buffer) => {
      if (d.length >= ACTIVE_CHUNK) o.onActivity?.(workspace, activity);
    });
    socket.pipe(t).pipe(socket);
    t.on('error', () => socket.destroy());
    socket.on('error', () => t.destroy());
  }

  const listen = parseListen(o.listen, '--web-listen');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const address = o.listen.replace(/:\d+$/, `:${port}`);
  o.log.info({ address }, 'web: serving /w/NAME/ over HTTPS');
  return {
    address,
    setCertificate(certPem, keyPem) {
      server.setSecureContext({ cert: certPem, key: keyPem });
    },
    close() {
      for (const c of wss.clients) c.terminate();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
