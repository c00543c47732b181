// How the controller reaches agents: one set of gRPC clients per host,
// behind an interface so the workspace logic is tested against a fake that
// records calls. The controller never touches a host itself; everything it
// does there is one of these calls.
import * as grpc from '@grpc/grpc-js';
import { CLIENT_OPTIONS, ContainersClient, ExecClient, HostClient, unary, type Container, type CreateContainerRequest, type Peer } from '../../proto/shared/api.js';
import { fromStatus } from '../../proto/shared/grpc-errors.js';

/** A host as the gateway needs it. */
export interface AgentTarget {
  name: string;
  /** HOST:PORT of the agent's gRPC API (or unix:///path). */
  address: string;
}

export interface AgentGateway {
  setPeers(t: AgentTarget, peers: Peer[]): Promise<void>;
  create(t: AgentTarget, req: CreateContainerRequest): Promise<Container>;
  start(t: AgentTarget, name: string): Promise<Container>;
  stop(t: AgentTarget, name: string, graceSeconds: number): Promise<Container>;
  remove(t: AgentTarget, name: string): Promise<void>;
  get(t: AgentTarget, name: string): Promise<Container>;
  list(t: AgentTarget, labels?: Record<string, string>): Promise<Container[]>;
  /** Drops the host's connection (it came back: connect afresh instead of waiting out a backoff). */
  reset(name: string): void;
  /** Raw clients for the streaming proxies (exec, logs). */
  clients(t: AgentTarget): { containers: ContainersClient; exec: ExecClient };
  close(): void;
}

const CALL_MS = 30_000;
/** A host that was down is tried again within 2 s, not grpc-js's default of up to 2 minutes. */
const CHANNEL_OPTIONS: grpc.ClientOptions = { ...CLIENT_OPTIONS, 'grpc.initial_reconnect_backoff_ms': 250, 'grpc.max_reconnect_backoff_ms': 2000 };
/** Pulling an image can take long: creates get more time. */
const CREATE_MS = 15 * 60_000;

interface Clients {
  address: string;
  host: HostClient;
  containers: ContainersClient;
  exec: ExecClient;
}

export class GrpcAgentGateway implements AgentGateway {
  private readonly byHost = new Map<string, Clients>();

  constructor(private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {}

  private of(t: AgentTarget): Clients {
    const cur = this.byHost.get(t.name);
    if (cur && cur.address === t.address) return cur;
    if (cur) this.closeClients(cur);
    const target = t.address.startsWith('unix:') ? t.address : `dns:${t.address}`;
    const c: Clients = {
      address: t.address,
      host: new HostClient(target, this.credentials, CHANNEL_OPTIONS),
      containers: new ContainersClient(target, this.credentials, CHANNEL_OPTIONS),
      exec: new ExecClient(target, this.credentials, CHANNEL_OPTIONS),
    };
    this.byHost.set(t.name, c);
    return c;
  }

  private call<Res>(p: Promise<Res>): Promise<Res> {
    // Agent errors arrive as statuses; turn them back into the catalogue.
    return p.catch((e: unknown) => {
      throw fromStatus(e);
    });
  }

  private deadline(ms = CALL_MS): grpc.CallOptions {
    return { deadline: Date.now() + ms };
  }

  async setPeers(t: AgentTarget, peers: Peer[]): Promise<void> {
    const c = this.of(t).host;
    await this.call(unary(c, c.SetPeers, { peers }, this.deadline()));
  }

  async create(t: AgentTarget, req: CreateContainerRequest): Promise<Container> {
    const c = this.of(t).containers;
    return (await this.call(unary(c, c.Create, req, this.deadline(CREATE_MS)))).container!;
  }

  async start(t: AgentTarget, name: string): Promise<Container> {
    const c = this.of(t).containers;
    return (await this.call(unary(c, c.Start, { name }, this.deadline()))).container!;
  }

  async stop(t: AgentTarget, name: string, graceSeconds: number): Promise<Container> {
    const c = this.of(t).containers;
    return (await this.call(unary(c, c.Stop, { name, graceSeconds }, this.deadline(CALL_MS + graceSeconds * 1000)))).container!;
  }

  async remove(t: AgentTarget, name: string): Promise<void> {
    const c = this.of(t).containers;
    await this.call(unary(c, c.Remove, { name, force: true }, this.deadline()));
  }

  async get(t: AgentTarget, name: string): Promise<Container> {
    const c = this.of(t).containers;
    return (await this.call(unary(c, c.Get, { name }, this.deadline()))).container!;
  }

  async list(t: AgentTarget, labels: Record<string, string> = {}): Promise<Container[]> {
    const c = this.of(t).containers;
    return (await this.call(unary(c, c.List, { labels }, this.deadline()))).containers;
  }

  clients(t: AgentTarget): { containers: ContainersClient; exec: ExecClient } {
    const c = this.of(t);
    return { containers: c.containers, exec: c.exec };
  }

  reset(name: string): void {
    const c = this.byHost.get(name);
    if (!c) return;
    this.byHost.delete(name);
    this.closeClients(c);
  }

  private closeClients(c: Clients): void {
    c.host.close();
    c.containers.close();
    c.exec.close();
  }

  close(): void {
    for (const c of this.byHost.values()) this.closeClients(c);
    this.byHost.clear();
  }
}
