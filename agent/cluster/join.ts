// Membership of a cluster: the agent registers with its controller (name,
// address, capacity, labels) and receives its container subnet and the
// cluster's pool, then sends a heartbeat every few seconds. A heartbeat the
// controller answers NOT_FOUND (it forgot the host, or lost its store) makes
// the agent register again. The subnet is remembered in <root>/cluster.json:
// the containers of this host hold addresses in it, so a controller that
// hands out another one is refused instead of followed.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_OPTIONS, ClusterHostsClient, unary, type HostUsage, type RegisterHostRequest, type RegisterHostResponse } from '../../proto/shared/api.js';
import { LxrError } from '../../proto/shared/errors.js';
import { fromStatus } from '../../proto/shared/grpc-errors.js';
import type { Logger } from '../../proto/shared/log.js';

export interface JoinOptions {
  /** The controller's HOST:PORT (or unix:///path). */
  controller: string;
  /** The agent's state root: cluster.json lives there. */
  root: string;
  registration: RegisterHostRequest;
  /** How to reach the controller (credentials.ts controllerChannel); default: plain, for tests on a unix socket. */
  channel?: () => { target: string; credentials: grpc.ChannelCredentials; options: grpc.ClientOptions };
  log: Logger;
  /** Stop retrying (shutdown). */
  signal?: AbortSignal;
}

export interface Membership {
  name: string;
  subnet: string;
  pool: string;
  heartbeatSeconds: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/**
 * `fn`, tried again with backoff (250 ms doubling to 10 s) while it fails
 * with LXR_UNAVAILABLE (the controller does not answer: it may start after
 * this agent), until `signal` aborts.
 */
export async function whileUnavailable<T>(fn: () => Promise<T>, controller: string, log: Logger, signal?: AbortSignal): Promise<T> {
  for (let wait = 250; ; wait = Math.min(wait * 2, 10_000)) {
    try {
      return await fn();
    } catch (e) {
      const err = e as LxrError;
      if (err.reason !== 'LXR_UNAVAILABLE' || signal?.aborted) throw e;
      log.warn({ controller, err: err.message }, 'controller does not answer; trying again');
      await sleep(wait, signal);
    }
  }
}

const stateFile = (root: string): string => path.join(root, 'cluster.json');

function remembered(root: string): { controller: string; name: string; subnet: string } | null {
  try {
    return JSON.parse(readFileSync(stateFile(root), 'utf8')) as { controller: string; name: string; subnet: string };
  } catch {
    return null;
  }
}

function remember(root: string, v: { controller: string; name: string; subnet: string }): void {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  writeFileSync(stateFile(root) + '.tmp', JSON.stringify(v) + '\n', { mode: 0o600 });
  renameSync(stateFile(root) + '.tmp', stateFile(root));
}

function target(address: string): string {
  return address.startsWith('unix:') ? address : `dns:${address}`;
}

/** What this machine offers, as the controller schedules by it. */
export function machineFacts(): Pick<RegisterHostRequest, 'cpus' | 'memoryBytes' | 'architecture'> {
  const arch = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }[process.arch as string] ?? process.arch;
  return { cpus: os.availableParallelism(), memoryBytes: os.totalmem(), architecture: arch };
}

export class ClusterMember {
  private client: ClusterHostsClient;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private membership: Membership | null = null;

  constructor(private readonly o: JoinOptions) {
    this.client = this.newClient();
  }

  private newClient(): ClusterHostsClient {
    const ch = this.o.channel?.() ?? { target: target(this.o.controller), credentials: grpc.credentials.createInsecure(), options: CLIENT_OPTIONS };
    return new ClusterHostsClient(ch.target, ch.credentials, ch.options);
  }

  /**
   * A new connection for the next calls (this host's certificate was
   * renewed: the controller checks it on every call). The old one is closed;
   * a call on it finishes first.
   */
  reconnect(): void {
    if (this.stopped) return;
    const old = this.client;
    this.client = this.newClient();
    old.close();
  }

  /** Registers once; the subnet must agree with the one this host's containers use. */
  async register(): Promise<Membership> {
    const before = remembered(this.o.root);
    const req = { ...this.o.registration, ...(before?.subnet ? { subnet: before.subnet } : {}) };
    let res: RegisterHostResponse;
    try {
      res = await unary(this.client, this.client.Register, req, { deadline: Date.now() + 10_000 });
    } catch (e) {
      throw fromStatus(e);
    }
    const subnet = res.host?.subnet ?? '';
    if (before?.subnet && before.subnet !== subnet) {
      throw new LxrError(
        'LXR_ILLEGAL_STATE',
        `the controller ${this.o.controller} gives host ${req.name} the subnet ${subnet}, but this host's containers use ${before.subnet} (${stateFile(this.o.root)}): remove the host from the controller, or this agent's state, to start afresh`,
      );
    }
    remember(this.o.root, { controller: this.o.controller, name: req.name ?? '', subnet });
    this.membership = { name: req.name ?? '', subnet, pool: res.pool, heartbeatSeconds: res.heartbeatSeconds || 5 };
    return this.membership;
  }

  /** Registers, trying again (with backoff up to 10 s) while the controller does not answer. */
  join(): Promise<Membership> {
    return whileUnavailable(() => this.register(), this.o.controller, this.o.log, this.o.signal);
  }

  /** Sends heartbeats with the host's usage until stop(). */
  startHeartbeats(usage: () => Promise<HostUsage>): void {
    const m = this.membership;
    if (!m) throw new LxrError('LXR_ILLEGAL_STATE', 'heartbeats before registration');
    const beat = async (): Promise<void> => {
      try {
        await unary(this.client, this.client.Heartbeat, { name: m.name, usage: await usage() }, { deadline: Date.now() + m.heartbeatSeconds * 1000 });
      } catch (e) {
        const err = fromStatus(e);
        if (err.reason === 'LXR_NOT_FOUND') {
          this.o.log.warn({ controller: this.o.controller }, 'the controller does not know this host; registering again');
          await this.register().catch((r: unknown) => this.o.log.error({ err: r }, 'registering again failed'));
        } else this.o.log.warn({ controller: this.o.controller, err: err.message }, 'heartbeat failed');
      }
    };
    const loop = (): void => {
      if (!this.stopped) this.timer = setTimeout(() => void beat().finally(loop), m.heartbeatSeconds * 1000);
    };
    void beat().finally(loop);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.client.close();
  }
}
