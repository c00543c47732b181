// lxr-controller: cluster state, scheduling and the public API
// (proto/lxr/controller/v1). SIGTERM/SIGINT stop it; workspaces keep
// running on their hosts, and the next controller picks up from its store.
import { requestJoinToken } from '../proto/shared/join-token.js';
import { walkFlags } from '../proto/shared/flags.js';
import { fromStatus } from '../proto/shared/grpc-errors.js';
import { CONTROLLER_VERSION, startController, type ControllerOptions } from './server.js';
import { DEFAULT_CONTROLLER_SOCKET } from '../proto/shared/version.js';

const USAGE = `usage: lxr-controller [--root DIR] [--socket PATH] [--listen HOST:PORT] [--metrics-listen HOST:PORT]
                      [--pool CIDR] [--subnet-prefix N] [--heartbeat-interval SECONDS] [--host-grace SECONDS]
                      [--reconcile-interval SECONDS] [--policy spread|binpack]
                      [--unready-policy keep|reschedule] [--reschedule-after SECONDS]
                      [--cert-ttl SECONDS] [--tls-san NAME|IP]... [--web-listen HOST:PORT] [--idle-timeout SECONDS]
       lxr-controller token create [--ttl SECONDS] [--socket PATH]
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
      case '--cert-ttl':
        o.certTtlSeconds = positive(flag, value());
        if (o.certTtlSeconds < 10) throw new Error(`--cert-ttl must be at least 10 seconds, got ${o.certTtlSeconds}`);
        break;
      case '--idle-timeout':
        o.idleTimeoutSeconds = positive(flag, value());
        break;
      case '--web-listen':
        o.webListen = value();
        break;
      case '--tls-san':
        (o.tlsSans ??= []).push(value());
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  });
  if ((o.hostGraceSeconds ?? 40) <= (o.heartbeatSeconds ?? 5)) throw new Error(`--host-grace (${o.hostGraceSeconds ?? 40} s) must be longer than --heartbeat-interval (${o.heartbeatSeconds ?? 5} s)`);
  o.unready = { policy: unready, afterMs: after * 1000 };
  return o;
}

/** `token create`: a join token from the running controller, asked on its unix socket (root only). */
async function tokenCommand(args: string[]): Promise<void> {
  if (args[0] !== 'create') throw new UsageFailure(`token wants create, got ${args[0] ?? 'nothing'}`);
  let socket = DEFAULT_CONTROLLER_SOCKET;
  let ttl = 0;
  walkFlags(args.slice(1), (flag, value, a) => {
    if (flag === '--socket') socket = value();
    else if (flag === '--ttl') {
      try {
        ttl = positive(flag, value());
      } catch (e) {
        throw new UsageFailure((e as Error).message);
      }
    } else throw new UsageFailure(`unknown argument ${a}`);
  }, (m) => new UsageFailure(m));
  try {
    const res = await requestJoinToken(socket, ttl);
    process.stdout.write(`${res.token}\n`);
    process.stderr.write(`join token ${res.id}, valid until ${res.expiresAt}: lxr-agent --join CONTROLLER:PORT --token TOKEN --name NAME --listen ADDRESS:PORT\n`);
  } catch (e) {
    const err = fromStatus(e);
    throw new Error(err.reason === 'LXR_UNAVAILABLE' ? `cannot reach the controller on ${socket}: is it running? (${err.message})` : err.message);
  }
}

class UsageFailure extends Error {}

async function main(args: string[]): Promise<void> {
  if (args[0] === 'token') {
    try {
      await tokenCommand(args.slice(1));
    } catch (e) {
      process.stderr.write(`lxr-controller: ${(e as Error).message}\n${e instanceof UsageFailure ? USAGE : ''}`);
      process.exitCode = e instanceof UsageFailure ? 2 : 1;
    }
    return;
  }
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
