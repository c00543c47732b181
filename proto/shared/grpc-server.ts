// Binding a gRPC server the way every LXR server does (agent, controller):
// a unix socket that is never reachable with the umask's mode, and TCP.
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { LxrError } from './errors.js';
import { install as installFramed } from './grpc-framed.js';

/** Whether something accepts connections on the unix socket `p`. */
export function socketAccepts(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(p);
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * A gRPC server as every LXR server makes one: keepalive pings find clients
 * that vanished without closing (a laptop that went to sleep), so their exec
 * sessions count as detached; responses framed by their serializer are sent
 * as they are (grpc-framed.ts).
 */
export function newServer(): grpc.Server {
  installFramed();
  return new grpc.Server({ 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_timeout_ms': 10_000 });
}

export function bind(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))));
}

/**
 * Binds the unix socket inside a fresh 0700 directory, makes it 0600 and
 * only then renames it into place: no client can connect while the mode is
 * still the umask's.
 */
export async function bindUnix(server: grpc.Server, socket: string): Promise<void> {
  const dir = path.dirname(socket);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const st = lstatSync(socket, { throwIfNoEntry: false });
  if (st) {
    if (!st.isSocket()) throw new LxrError('LXR_ALREADY_EXISTS', `${socket} exists and is not a socket`, { field: 'socket' });
    if (await socketAccepts(socket)) throw new LxrError('LXR_ALREADY_EXISTS', `another server listens on ${socket}`, { field: 'socket' });
    unlinkSync(socket); // a stale socket of an agent that died
  }
  const priv = path.join(dir, `.${path.basename(socket)}.${randomBytes(4).toString('hex')}`);
  mkdirSync(priv, { mode: 0o700 });
  try {
    const tmp = path.join(priv, 's');
    await bind(server, `unix://${tmp}`, grpc.ServerCredentials.createInsecure());
    chmodSync(tmp, 0o600);
    renameSync(tmp, socket);
  } finally {
    rmdirSync(priv);
  }
}


/** Lets calls in flight finish for up to `ms`, then cuts what is left. */
export function shutdownServer(server: grpc.Server, ms = 5000): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, ms);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
