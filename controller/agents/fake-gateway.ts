// An AgentGateway without agents: containers per host kept in memory, every
// call recorded, and a host made unreachable or one call made to fail on
// demand, so the controller's workspace and peer logic is tested without
// root, processes or sockets. It answers as an agent does (names unique per
// host, a create repeated with the same request id returns the container).
import { LxrError, alreadyExists, illegalState, notFound } from '../../proto/shared/errors.js';
import type { Container, CreateContainerRequest, Peer } from '../../proto/shared/api-types.js';
import type { AgentGateway, AgentTarget } from './agent-gateway.js';

export type FakeOp = 'setPeers' | 'create' | 'start' | 'stop' | 'remove' | 'get' | 'list';

export interface FakeCall {
  op: FakeOp | 'reset';
  host: string;
  name?: string;
  requestId?: string;
  labels?: Record<string, string>;
  graceSeconds?: number;
  peers?: Peer[];
}

/** Exit code of a container stopped by request: its main process ended by SIGTERM. */
export const STOPPED_EXIT_CODE = 143;

interface FakeContainer {
  ctr: Container;
  requestId: string;
}

interface FakeHost {
  index: number;
  next: number;
  containers: Map<string, FakeContainer>;
}

export class FakeAgentGateway implements AgentGateway {
  readonly calls: FakeCall[] = [];
  /** The last peer list each host accepted. */
  readonly peers = new Map<string, Peer[]>();
  private readonly hosts = new Map<string, FakeHost>();
  private readonly unreachable = new Set<string>();
  private readonly failures = new Map<FakeOp, LxrError[]>();
  private clock = 0;

  /** Every call to the host rejects with LXR_UNAVAILABLE until up(). */
  down(host: string): void {
    this.unreachable.add(host);
  }

  up(host: string): void {
    this.unreachable.delete(host);
  }

  /** The next call of `op` (to any reachable host) rejects with `err`; queued in order. */
  failNext(op: FakeOp, err: LxrError): void {
    const q = this.failures.get(op) ?? [];
    q.push(err);
    this.failures.set(op, q);
  }

  /** The host's containers (copies), by name. */
  containers(host: string): Container[] {
    return [...(this.hosts.get(host)?.containers.values() ?? [])].map((c) => copy(c.ctr)).sort((a, b) => a.name.localeCompare(b.name));
  }

  container(host: string, name: string): Container | undefined {
    const c = this.hosts.get(host)?.containers.get(name);
    return c && copy(c.ctr);
  }

  /** The recorded calls of one op, optionally to one host. */
  callsOf(op: FakeCall['op'], host?: string): FakeCall[] {
    return this.calls.filter((c) => c.op === op && (host === undefined || c.host === host));
  }

  /** Puts a container on a host without a call (what an earlier controller or a person left there). */
  seed(host: string, req: CreateContainerRequest & { state?: 'created' | 'running' | 'stopped' }): Container {
    const c = this.make(host, req);
    if (req.state === 'running') this.run(c.ctr);
    else if (req.state === 'stopped') Object.assign(c.ctr, { state: 'stopped', exitCode: 0, finishedAt: this.stamp() });
    return copy(c.ctr);
  }

  /** The container's main process ended by itself. */
  exit(host: string, name: string, exitCode: number, oomKilled = false): void {
    const c = this.must(host, name);
    Object.assign(c.ctr, { state: 'stopped', pid: 0, exitCode, oomKilled, finishedAt: this.stamp() });
  }

  /** The host lost the container (a wiped state directory, a person's rm). */
  lose(host: string, name: string): void {
    this.must(host, name);
    this.hosts.get(host)!.containers.delete(name);
  }

  // ----------------------------------------------------------- gateway

  async setPeers(t: AgentTarget, peers: Peer[]): Promise<void> {
    await this.enter({ op: 'setPeers', host: t.name, peers: structuredClone(peers) });
    this.peers.set(t.name, structuredClone(peers));
  }

  async create(t: AgentTarget, req: CreateContainerRequest): Promise<Container> {
    await this.enter({ op: 'create', host: t.name, name: req.name ?? '', requestId: req.requestId ?? '', labels: { ...(req.labels ?? {}) } });
    const existing = this.host(t.name).containers.get(req.name ?? '');
    if (existing) {
      if (req.requestId && existing.requestId === req.requestId) return copy(existing.ctr);
      throw alreadyExists('container', req.name ?? '');
    }
    return copy(this.make(t.name, req).ctr);
  }

  async start(t: AgentTarget, name: string): Promise<Container> {
    await this.enter({ op: 'start', host: t.name, name });
    const c = this.must(t.name, name);
    if (c.ctr.state === 'running') throw illegalState('container', name, 'running', 'start');
    this.run(c.ctr);
    return copy(c.ctr);
  }

  async stop(t: AgentTarget, name: string, graceSeconds: number): Promise<Container> {
    await this.enter({ op: 'stop', host: t.name, name, graceSeconds });
    const c = this.must(t.name, name);
    if (c.ctr.state === 'running') Object.assign(c.ctr, { state: 'stopped', pid: 0, exitCode: STOPPED_EXIT_CODE, signal: 15, finishedAt: this.stamp() });
    return copy(c.ctr);
  }

  async remove(t: AgentTarget, name: string): Promise<void> {
    await this.enter({ op: 'remove', host: t.name, name });
    this.must(t.name, name);
    this.host(t.name).containers.delete(name);
  }

  async get(t: AgentTarget, name: string): Promise<Container> {
    await this.enter({ op: 'get', host: t.name, name });
    return copy(this.must(t.name, name).ctr);
  }

  async list(t: AgentTarget, labels: Record<string, string> = {}): Promise<Container[]> {
    await this.enter({ op: 'list', host: t.name, labels: { ...labels } });
    return this.containers(t.name).filter((c) => Object.entries(labels).every(([k, v]) => c.labels[k] === v));
  }

  reset(name: string): void {
    this.calls.push({ op: 'reset', host: name });
  }

  clients(t: AgentTarget): never {
    throw new LxrError('LXR_UNSUPPORTED', `the fake gateway has no gRPC clients (host ${t.name}): exec and logs need a real agent`);
  }

  close(): void {}

  // ----------------------------------------------------------- inside

  /** Records the call, then fails it as the test asked; async so callers interleave as with a real agent. */
  private async enter(call: FakeCall): Promise<void> {
    this.calls.push(call);
    await Promise.resolve();
    if (this.unreachable.has(call.host)) throw new LxrError('LXR_UNAVAILABLE', `host ${call.host} is unreachable (fake gateway: down)`);
    const q = this.failures.get(call.op as FakeOp);
    const err = q?.shift();
    if (q && q.length === 0) this.failures.delete(call.op as FakeOp);
    if (err) throw err;
  }

  private host(name: string): FakeHost {
    let h = this.hosts.get(name);
    if (!h) {
      h = { index: this.hosts.size + 1, next: 2, containers: new Map() };
      this.hosts.set(name, h);
    }
    return h;
  }

  private must(host: string, name: string): FakeContainer {
    const c = this.hosts.get(host)?.containers.get(name);
    if (!c) throw notFound('container', name);
    return c;
  }

  private make(host: string, req: CreateContainerRequest): FakeContainer {
    const h = this.host(host);
    const name = req.name ?? '';
    if (h.containers.has(name)) throw alreadyExists('container', name);
    const ctr: Container = {
      name,
      id: `${host}-${name}-${h.next}`,
      image: req.image ?? '',
      imageDigest: '',
      state: 'created',
      pid: 0,
      exitCode: 0,
      signal: 0,
      oomKilled: false,
      createdAt: this.stamp(),
      startedAt: '',
      finishedAt: '',
      labels: { ...(req.labels ?? {}) },
      // 198.18.0.0/15 is reserved for tests: one /24 per host, in the order hosts are first used.
      address: `198.18.${h.index}.${h.next++}`,
      limits: { cpus: req.limits?.cpus ?? 0, memoryBytes: req.limits?.memoryBytes ?? 0, pids: req.limits?.pids ?? 0 },
    };
    const c = { ctr, requestId: req.requestId ?? '' };
    h.containers.set(name, c);
    return c;
  }

  private run(ctr: Container): void {
    Object.assign(ctr, { state: 'running', pid: 1000 + this.clock, exitCode: 0, signal: 0, oomKilled: false, startedAt: this.stamp(), finishedAt: '' });
  }

  /** Distinct, increasing timestamps without reading the wall clock. */
  private stamp(): string {
    return new Date(Date.UTC(2024, 0, 1) + ++this.clock * 1000).toISOString();
  }
}

const copy = (c: Container): Container => ({ ...c, labels: { ...c.labels }, limits: c.limits && { ...c.limits } });
