// lxr-agent: the per-host daemon. Serves the agent API (proto/lxr/agent/v1)
// on a unix socket, and on TCP when --listen is given. SIGTERM/SIGINT stop
// the server but leave containers running: the next agent adopts them.
import os from 'node:os';
import { mkdirSync } from 'node:fs';
import { walkFlags } from '../proto/shared/flags.js';
import { rootLogger } from '../proto/shared/log.js';
import type { TlsIdentity } from '../proto/shared/tls.js';
import { controllerChannel, hostCredentials, hostRenewal } from './cluster/credentials.js';
import { ClusterMember, machineFacts, whileUnavailable } from './cluster/join.js';
import { startAgent } from './server.js';
import { AGENT_VERSION } from './host/host-service.js';
import { IdeTools } from './ide/tools.js';
import path from 'node:path';

const USAGE = `usage: lxr-agent [--root DIR] [--socket PATH] [--listen HOST:PORT] [--metrics-listen HOST:PORT] [--cgroup-parent NAME] [--run-root DIR] [--label K=V]...
                 [--subnet CIDR [--bridge NAME] [--pool CIDR]] [--join HOST:PORT [--token TOKEN] --name NAME [--advertise HOST:PORT]] [--insecure-registry HOST:PORT]... [--exec-ring-bytes N] [--exec-idle-timeout SECONDS] [--exec-retention SECONDS]
                 [--tools-dir DIR]
       lxr-agent tools install [--tools-dir DIR | --root DIR]   install the IDE tools (Node, code-server) from npm now
       lxr-agent version
`;

const DEFAULT_ROOT = '/var/lib/lxr';

interface Flags {
  root: string;
  socket: string;
  listen?: string;
  metricsListen?: string;
  cgroupParent: string;
  runRoot: string;
  labels: Record<string, string>;
  exec: { ringBytes?: number; idleTimeoutMs?: number; retentionMs?: number };
  subnet?: string;
  bridge?: string;
  pool?: string;
  insecure: string[];
  controller?: string;
  token?: string;
  name?: string;
  advertise?: string;
  toolsDir?: string;
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} wants a positive whole number, got ${v}`);
  return n;
}

function parse(args: string[]): Flags {
  const f: Flags = { root: DEFAULT_ROOT, socket: '/run/lxr/agent.sock', cgroupParent: 'lxr', runRoot: '/run/lxr/runtime', labels: {}, exec: {}, insecure: [] };
  walkFlags(args, (flag, value, a) => {
    switch (flag) {
      case '--root':
        f.root = value();
        break;
      case '--socket':
        f.socket = value();
        break;
      case '--listen':
        f.listen = value();
        break;
      case '--metrics-listen':
        f.metricsListen = value();
        break;
      case '--cgroup-parent':
        f.cgroupParent = value();
        break;
      case '--run-root':
        f.runRoot = value();
        break;
      case '--subnet':
        f.subnet = value();
        break;
      case '--bridge':
        f.bridge = value();
        break;
      case '--pool':
        f.pool = value();
        break;
      case '--join':
      case '--controller': // the name before --join
        f.controller = value();
        break;
      case '--token':
        f.token = value();
        break;
      case '--name':
        f.name = value();
        break;
      case '--advertise':
        f.advertise = value();
        break;
      case '--insecure-registry':
        f.insecure.push(value());
        break;
      case '--exec-ring-bytes':
        f.exec.ringBytes = positive(flag, value());
        break;
      case '--exec-idle-timeout':
        f.exec.idleTimeoutMs = positive(flag, value()) * 1000;
        break;
      case '--exec-retention':
        f.exec.retentionMs = positive(flag, value()) * 1000;
        break;
      case '--tools-dir':
        f.toolsDir = value();
        break;
      case '--label': {
        const kv = value();
        const k = kv.indexOf('=');
        if (k <= 0) throw new Error(`--label wants KEY=VALUE, got ${kv}`);
        f.labels[kv.slice(0, k)] = kv.slice(k + 1);
        break;
      }
      default:
        throw new Error(`unknown argument ${a}`);
    }
  });
  if (f.pool && !f.subnet) throw new Error('--pool needs --subnet (with --join, the controller gives both)');
  if (f.bridge && !f.subnet && !f.controller) throw new Error('--bridge needs --subnet or --join');
  if (f.token && !f.controller) throw new Error('--token needs --join');
  if (f.listen && !f.controller) throw new Error('--listen needs --join: TCP is mutual TLS with the certificate the controller issues this host');
  if (f.controller) {
    if (f.subnet) throw new Error('--subnet and --join exclude each other: the controller gives this host its subnet');
    if (!f.listen && !f.advertise) throw new Error('--join needs --listen (or --advertise): the controller reaches the agent over TCP');
    f.name ??= os.hostname().split('.')[0]!.toLowerCase();
  } else if (f.name || f.advertise) throw new Error('--name and --advertise need --join');
  return f;
}

/**
 * `lxr-agent tools install`: what the agent does at the first IDE create,
 * done ahead (at install time, or for hosts whose agent cannot reach npm).
 */
async function toolsCommand(args: string[]): Promise<void> {
  let dir: string | undefined;
  let root = DEFAULT_ROOT;
  try {
    if (args[0] !== 'install') throw new Error(`tools wants a subcommand: install, not ${JSON.stringify(args[0] ?? '')}`);
    walkFlags(args.slice(1), (flag, value) => {
      if (flag === '--tools-dir') dir = value();
      else if (flag === '--root') root = value();
      else throw new Error(`unknown flag ${flag}`);
    });
  } catch (e) {
    process.stderr.write(`lxr-agent: ${(e as Error).message}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const tools = new IdeTools({ dir: dir ?? path.join(root, 'tools'), log: rootLogger('lxr-agent') });
  const already = tools.installed();
  try {
    const p = await tools.ensure();
    process.stdout.write(`${already ? 'already installed' : 'installed'}: ${p.node} ${p.codeServer}\n`);
  } catch (e) {
    process.stderr.write(`lxr-agent: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}

async function main(args: string[]): Promise<void> {
  if (args[0] === 'version' || args[0] === '--version') {
    process.stdout.write(`lxr-agent ${AGENT_VERSION}\n`);
    return;
  }
  if (args[0] === 'help' || args[0] === '--help' || args[0] === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  if (args[0] === 'tools') return toolsCommand(args.slice(1));
  let flags: Flags;
  try {
    flags = parse(args);
  } catch (e) {
    process.stderr.write(`lxr-agent: ${(e as Error).message}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  // Test-only fault injection: LXR_TEST_CRASH_AT=STEP makes the agent kill
  // itself with SIGKILL right after that step of a container create.
  const crashAt = process.env.LXR_TEST_CRASH_AT;
  const log = rootLogger('lxr-agent');
  let member: ClusterMember | null = null;
  let identity: TlsIdentity | undefined;
  let network: { subnet: string; bridge?: string; pool?: string; protect?: string[] } | undefined = flags.subnet ? { subnet: flags.subnet, ...(flags.bridge ? { bridge: flags.bridge } : {}), ...(flags.pool ? { pool: flags.pool } : {}) } : undefined;
  if (flags.controller) {
    // The subnet comes from the controller: join before the network is made.
    const advertise = flags.advertise ?? flags.listen!;
    const host = advertise.replace(/:\d+$/, '');
    const metricsPort = flags.metricsListen?.match(/:(\d+)$/)?.[1];
    const joining = new AbortController();
    const abort = (): void => joining.abort();
    process.once('SIGTERM', abort);
    process.once('SIGINT', abort);
    mkdirSync(flags.root, { recursive: true, mode: 0o700 });
    // Like registration, the join waits for a controller that does not answer yet.
    const creds = await whileUnavailable(
      () => hostCredentials({ root: flags.root, controller: flags.controller!, ...(flags.token ? { token: flags.token } : {}), name: flags.name!, addresses: [host], log }),
      flags.controller,
      log,
      joining.signal,
    );
    identity = creds;
    member = new ClusterMember({
      controller: flags.controller,
      channel: () => controllerChannel(flags.controller!, creds),
      root: flags.root,
      log,
      signal: joining.signal,
      registration: { name: flags.name!, address: advertise, metricsAddress: metricsPort && metricsPort !== '0' ? `${host}:${metricsPort}` : '', labels: flags.labels, agentVersion: AGENT_VERSION, ...machineFacts() },
    });
    const m = await member.join();
    process.off('SIGTERM', abort);
    process.off('SIGINT', abort);
    if (joining.signal.aborted) return;
    log.info({ controller: flags.controller, name: m.name, subnet: m.subnet, pool: m.pool }, 'joined the cluster');
    // The controller's endpoint is kept from containers from the start (SetPeers adds the rest).
    const controllerEndpoint = /^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/.test(flags.controller!) ? [flags.controller!] : [];
    network = { subnet: m.subnet, pool: m.pool, protect: controllerEndpoint, ...(flags.bridge ? { bridge: flags.bridge } : {}) };
  }
  const agent = await startAgent({
    log,
    ...(crashAt
      ? {
          crashPoint: (step: string) => {
            if (step === crashAt) process.kill(process.pid, 'SIGKILL');
          },
        }
      : {}),
    root: flags.root,
    socket: flags.socket,
    runtimeRoot: flags.runRoot,
    cgroupParent: flags.cgroupParent,
    labels: flags.labels,
    exec: flags.exec,
    ...(flags.insecure.length ? { registry: { insecure: flags.insecure } } : {}),
    ...(network ? { network } : {}),
    ...(flags.listen ? { listen: flags.listen } : {}),
    ...(identity ? { tls: identity } : {}),
    ...(flags.metricsListen ? { metricsListen: flags.metricsListen } : {}),
    ...(flags.toolsDir ? { toolsDir: flags.toolsDir } : {}),
  });
  member?.startHeartbeats(async () => (await agent.host.info()).usage);
  const stop = (code = 0): void => {
    // Containers are not stopped: only the API goes away.
    renewal?.stop();
    member?.stop();
    agent.close().then(
      () => process.exit(code),
      (e: unknown) => {
        process.stderr.write(`lxr-agent: ${(e as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  // A certificate that ran out is accepted nowhere: stop, saying how to come back.
  const renewal = identity
    ? hostRenewal(identity, flags.controller!, flags.root, log, () => member?.reconnect(), () => {
        process.stderr.write(`lxr-agent: this host's certificate expired at ${identity!.info.notAfter.toISOString()} before it could be renewed: start again with --token (lxr-controller token create) after removing the host (lxrctl hosts rm ${identity!.info.name})\n`);
        stop(1);
      })
    : null;
  renewal?.start();
  process.once('SIGTERM', () => stop());
  process.once('SIGINT', () => stop());
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`lxr-agent: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
