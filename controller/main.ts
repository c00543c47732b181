// lxr-controller: cluster state, scheduling and the public API
// (proto/lxr/controller/v1). SIGTERM/SIGINT stop it; workspaces keep
// running on their hosts, and the next controller picks up from its store.
import { walkFlags } from '../proto/shared/flags.js';
import { CONTROLLER_VERSION, startController, type ControllerOptions } from './server.js';
import { DEFAULT_CONTROLLER_SOCKET } from '../proto/shared/version.js';

const USAGE = `usage: lxr-controller [--root DIR] [--socket PATH] [--listen HOST:PORT] [--metrics-listen HOST:PORT]
                      [--pool CIDR] [--subnet-prefix N] [--heartbeat-interval SECONDS] [--host-grace SECONDS]
                      [--reconcile-interval SECONDS] [--policy spread|binpack]
                      [--unready-policy keep|reschedule] [--reschedule-after SECONDS]
       lxr-controller version
`;

function positive(flag: string, v: string, float = false): number {
  const n = Number(v);
  if (!(float ? Number.isFinite(n) : Number.isInteger(n)) || n <= 0) throw new Error(`${flag} wants a positive ${float ? 'number' : 'whole number'}, got ${v}`);
  return n;
}

function parseControllerFlags(args: string[]): ControllerOptions {
  const o: ControllerOptions = { root: '/var/lib/lxr-controller', socket: DEFAULT_CONTROLLER_SOCKET };
  let unready: 'keep' | 'reschedule' = 'keep';
  let after = 300;
  walkFlags(args, (flag, value, a) => {
    switch (flag) {
      case '--root':
        o.root = value();
        break;
      case '--socket':
        o.socket = value();
        break;
      case '--listen':
        o.listen = value();
        break;
      case '--metrics-listen':
        o.metricsListen = value();
        break;
      case '--pool':
        o.pool = value();
        break;
      case '--subnet-prefix':
        o.subnetPrefix = positive(flag, value());
        break;
      case '--heartbeat-interval':
        o.heartbeatSeconds = positive(flag, value());
        break;
      case '--host-grace':
        o.hostGraceSeconds = positive(flag, value(), true);
        break;
      case '--reconcile-interval':
        o.reconcileMs = positive(flag, value(), true) * 1000;
        break;
      case '--policy': {
        const p = value();
        if (p !== 'spread' && p !== 'binpack') throw new Error(`--policy wants spread or binpack, got ${p}`);
        o.policy = p;
        break;
      }
      case '--unready-policy': {
        const p = value();
        if (p !== 'keep' && p !== 'reschedule') throw new Error(`--unready-policy wants keep or reschedule, got ${p}`);
        unready = p;
        break;
      }
      case '--reschedule-after':
        after = positive(flag, value(), true);
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  });
  if ((o.hostGraceSeconds ?? 40) <= (o.heartbeatSeconds ?? 5)) throw new Error(`--host-grace (${o.hostGraceSeconds ?? 40} s) must be longer than --heartbeat-interval (${o.heartbeatSeconds ?? 5} s)`);
  o.unready = { policy: unready, afterMs: after * 1000 };
  return o;
}

async function main(args: string[]): Promise<void> {
  if (args[0] === 'version' || args[0] === '--version') {
    process.stdout.write(`lxr-controller ${CONTROLLER_VERSION}\n`);
    return;
  }
  if (args[0] === 'help' || args[0] === '--help' || args[0] === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  let o: ControllerOptions;
  try {
    o = parseControllerFlags(args);
  } catch (e) {
    process.stderr.write(`lxr-controller: ${(e as Error).message}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const c = await startController(o);
  const stop = (): void => {
    c.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`lxr-controller: ${(e as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`lxr-controller: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
