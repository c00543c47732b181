// The HTTP side of every LXR component's /metrics (agent and controller):
// GET /metrics serves a prom-client registry; extra read-only JSON routes
// (the controller's Prometheus service discovery) can sit beside it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, type Registry } from 'prom-client';
import type { Logger } from './log.js';

/** Extra GET routes: path -> a JSON body (computed per request). */
export type JsonRoutes = Record<string, () => unknown | Promise<unknown>>;

export interface MetricsServer {
  /** HOST:PORT actually bound (the port filled in when 0 was asked). */
  address: string;
  close(): Promise<void>;
}

/** "HOST:PORT" or "[V6]:PORT"; `what` names the address in the error. */
export function parseListen(listen: string, what = 'metrics address'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new Error(`${what} ${JSON.stringify(listen)} is not HOST:PORT`);
  return { host: m[1] ?? m[2] ?? '', port };
}

/** Serves `registry` at GET /metrics on `listen`; 404 for any other path. */
export async function serveMetrics(registry: Registry, listen: string, log?: Logger, routes: JsonRoutes = {}): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    const route = Object.hasOwn(routes, pathname) ? routes[pathname] : undefined;
    if (pathname !== '/metrics' && !route) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    if (route) {
      Promise.resolve()
        .then(route)
        .then(
          (v) => res.writeHead(200, { 'content-type': 'application/json' }).end(req.method === 'HEAD' ? undefined : JSON.stringify(v)),
          (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${e instanceof Error ? e.message : String(e)}\n`),
        );
      return;
    }
    registry.metrics().then(
      (body) => {
        res.writeHead(200, { 'content-type': registry.contentType });
        // prom-client writes not-a-number as "Nan" (e.g. the event-loop lag before its first
        // sample); the text format spells it "NaN", and stricter parsers refuse anything else.
        res.end(req.method === 'HEAD' ? undefined : body.replace(/ Nan$/gm, ' NaN'));
      },
      (e: unknown) => {
        log?.warn({ err: e }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${e instanceof Error ? e.message : String(e)}\n`);
      },
    );
  };
  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host || undefined, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  let closed: Promise<void> | undefined;
  return {
    address: `${shownHost}:${bound}`,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/**
 * prom-client's process and Node.js metrics under `prefix`, minus the
 * gauges it names with a counter's "_total" suffix (active handles,
 * requests, resources): `promtool check metrics` rejects those names.
 */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const m of registry.getMetricsAsArray()) {
    const name = (m as { name: string }).name;
    if (name.startsWith(prefix) && name.endsWith('_total') && String((m as unknown as { type?: unknown }).type) !== 'counter') registry.removeSingleMetric(name);
  }
}
