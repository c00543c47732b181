// TCP connections tunnelled over a gRPC stream (port forwarding): on the
// agent, a socket to the container's port joined to the server stream; on
// the clients (the controller's web proxy, lxrctl port-forward), the client
// stream seen as a Duplex, so node:http or a socket can use it. Both ways
// have backpressure (pump), and half-closes travel as close_write.
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import type { PortForwardRequest, PortForwardResponse } from './api-types.js';
import { LxrError } from './errors.js';
import { fromStatus } from './grpc-errors.js';
import { pump } from './pump.js';

/** The agent's side: a connected socket and the call that asked for it. */
export function serveTunnel(call: grpc.ServerDuplexStream<PortForwardRequest, PortForwardResponse>, socket: Socket): void {
  call.write({ connected: true });
  pump<Buffer, PortForwardResponse>(socket, call, (data) => ({ data }));
  socket.on('end', () => call.write({ closeWrite: true }));
  socket.on('close', () => call.end());
  socket.on('error', () => socket.destroy());
  call.on('data', (m: PortForwardRequest) => {
    if (m.data?.length) {
      if (!socket.write(m.data)) {
        call.pause();
        socket.once('drain', () => call.resume());
      }
    } else if (m.closeWrite) socket.end();
  });
  call.on('end', () => socket.end());
  call.on('error', () => socket.destroy());
  call.on('cancelled', () => socket.destroy());
}

/**
 * The client's side: the stream (already sent its start message) as a
 * Duplex that emits 'connect' when the far end is connected. A failure of
 * the stream is the Duplex's error, as an LxrError.
 */
export function tunnelDuplex(stream: grpc.ClientDuplexStream<PortForwardRequest, PortForwardResponse>): Duplex {
  let wantMore = true;
  const d = new Duplex({
    read() {
      if (!wantMore) {
        wantMore = true;
        stream.resume();
      }
    },
    write(chunk: Buffer, _enc, cb) {
      if (stream.write({ data: chunk })) cb();
      else stream.once('drain', () => cb());
    },
    final(cb) {
      stream.write({ closeWrite: true });
      cb();
    },
    destroy(err, cb) {
      stream.cancel();
      cb(err);
    },
  });
  stream.on('data', (m: PortForwardResponse) => {
    if (m.connected) d.emit('connect');
    else if (m.data?.length) {
      if (!d.push(m.data)) {
        wantMore = false;
        stream.pause();
      }
    } else if (m.closeWrite) d.push(null);
  });
  stream.on('end', () => {
    d.push(null);
  });
  stream.on('error', (e: grpc.ServiceError) => {
    if (e.code === 1 /* CANCELLED: we ended it */) return;
    d.destroy(e instanceof LxrError ? e : fromStatus(e));
  });
  return d;
}
