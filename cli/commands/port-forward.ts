// lxrctl port-forward: a local TCP port that reaches a port of a workspace,
// as kubectl port-forward does. Each local connection is one tunnel
// through the controller and the workspace's host (Workspaces.PortForward).
import { createServer, type Socket } from 'node:net';
import type { Command } from '../command.js';
import { Exit, invalid } from '../failure.js';
import { tunnelDuplex } from '../../proto/shared/tunnel.js';
import { checkName } from './common.js';

function parsePorts(v: string): { local: number; remote: number } {
  const m = /^(?:(\d{1,5}):)?(\d{1,5})$/.exec(v);
  const ok = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 65535;
  if (!m) throw invalid(`${JSON.stringify(v)} is not [LOCAL:]REMOTE (e.g. 8080 or 9000:80)`);
  const remote = Number(m[2]);
  const local = m[1] === undefined ? remote : Number(m[1]);
  if (!ok(local) || !ok(remote) || remote === 0) throw invalid(`${JSON.stringify(v)}: ports are 1-65535 (LOCAL may be 0: any free port)`);
  return { local, remote };
}

const portForward: Command = {
  path: ['port-forward'],
  usage: 'NAME [LOCAL:]REMOTE',
  summary: 'listen on a local port and tunnel each connection to a port of the workspace',
  args: { flags: [{ name: 'address', kind: 'string', value: 'IP', help: 'the local address to listen on (default 127.0.0.1)' }], positionals: ['NAME', '[LOCAL:]REMOTE'], required: 2 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'workspace');
    const { local, remote } = parsePorts(inv.args.positionals[1]!);
    const address = (inv.args.flags.address as string | undefined) ?? '127.0.0.1';
    const c = inv.connection();
    // The workspace must be there and running before we listen.
    await c.call(c.workspaces, c.workspaces.Get, { name }).then((r) => {
      if (r.workspace?.state !== 'Running') throw invalid(`workspace ${name} is ${r.workspace?.state ?? 'gone'}: only a running workspace has ports`);
    });
    const server = createServer((conn: Socket) => {
      const stream = c.workspaces.PortForward(c.metadata());
      stream.write({ start: { container: name, port: remote } });
      const t = tunnelDuplex(stream);
      conn.pipe(t).pipe(conn);
      t.on('error', (e) => {
        inv.err(`lxrctl: ${name}:${remote}: ${e.message}\n`);
        conn.destroy();
      });
      conn.on('error', () => t.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(invalid(`cannot listen on ${address}:${local}: ${e.code ?? e.message}`)));
      server.listen(local, address, () => resolve());
    });
    const bound = (server.address() as { port: number }).port;
    inv.out(`forwarding ${address}:${bound} -> ${name}:${remote} (ctrl-c ends it)\n`);
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        server.close();
        resolve();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    return Exit.OK;
  },
};

export const portForwardCommands: Command[] = [portForward];
