// A browser's WebSocket joined to an exec session in a workspace: input and
// resizes up as JSON text frames, the terminal's bytes down as binary
// frames. The session is durable (agent/exec): when the page goes away the
// stream to the agent is cancelled, not the shell, and the next page of the
// tab attaches to it again from the start of what the agent kept.
// Backpressure: the agent's stream is paused while the socket's buffer is
// over a limit, and resumed when it drains.
import type * as grpc from '@grpc/grpc-js';
import type { WebSocket } from 'ws';
import type { ExecClient } from '../../proto/shared/api.js';
import type { ExecRequest, ExecResponse } from '../../proto/shared/api-types.js';
import type { Logger } from '../../proto/shared/log.js';

const HIGH_WATER = 1 << 20;
/** The shell: bash when the image has it, else sh. */
const SHELL = ['/bin/sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi'];

export interface BridgeOptions {
  workspace: string;
  exec: ExecClient;
  /** The agent's session id to attach to; none starts a new shell. */
  session?: string;
  rows: number;
  cols: number;
  /** Input counts as activity (idle detection, later). */
  onInput?: () => void;
  log: Logger;
}

export function bridgeTerminal(ws: WebSocket, o: BridgeOptions): void {
  const stream: grpc.ClientDuplexStream<ExecRequest, ExecResponse> = o.session ? o.exec.Attach() : o.exec.Exec();
  stream.write(o.session ? { attach: { sessionId: o.session, offset: 0 } } : { start: { container: o.workspace, args: SHELL, tty: true, rows: o.rows, cols: o.cols, env: ['TERM=xterm-256color'] } });
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    stream.cancel();
    if (ws.readyState === ws.OPEN) ws.close(1000);
  };
  stream.on('data', (m: ExecResponse) => {
    if (m.sessionId) ws.send(JSON.stringify({ type: 'session', id: m.sessionId }));
    else if (m.output?.data?.length) {
      ws.send(m.output.data);
      if (ws.bufferedAmount > HIGH_WATER) {
        stream.pause();
        const wait = setInterval(() => {
          if (ws.readyState !== ws.OPEN || ws.bufferedAmount <= HIGH_WATER / 2) {
            clearInterval(wait);
            stream.resume();
          }
        }, 20);
      }
    } else if (m.exit) {
      ws.send(JSON.stringify({ type: 'exit', code: m.exit.code }));
      end();
    }
  });
  stream.on('error', (e: grpc.ServiceError) => {
    if (ended) return;
    o.log.warn({ workspace: o.workspace, err: e.details ?? e.message }, 'web terminal: the exec stream failed');
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'error', message: e.details ?? e.message }));
    end();
  });
  stream.on('end', end);
  ws.on('message', (raw, isBinary) => {
    if (isBinary || ended) return;
    let m: { type?: string; data?: unknown; rows?: unknown; cols?: unknown };
    try {
      m = JSON.parse(String(raw)) as typeof m;
    } catch {
      return;
    }
    if (m.type === 'input' && typeof m.data === 'string') {
      o.onInput?.();
      stream.write({ stdin: Buffer.from(m.data) });
    } else if (m.type === 'resize' && Number.isInteger(m.rows) && Number.isInteger(m.cols) && (m.rows as number) > 0 && (m.cols as number) > 0 && (m.rows as number) < 1000 && (m.cols as number) < 1000) {
      stream.write({ resize: { rows: m.rows as number, cols: m.cols as number } });
    }
  });
  // The page went away: leave the shell running for the next one.
  ws.on('close', end);
}
