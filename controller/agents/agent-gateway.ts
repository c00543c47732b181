// How the controller reaches agents: one set of gRPC clients per host,
// behind an interface so the workspace logic is tested against a fake that
// records calls. The controller never touches a host itself; everything it
// does there is one of these calls.
import { createReadStream } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_OPTIONS, ContainersClient, ExecClient, HostClient, ImagesClient, unary, type Container, type CreateContainerRequest, type Image, type LayerProgress, type Peer, type Platform, type PullResponse, type RemoveImageResponse } from '../../proto/shared/api.js';
import { LxrError } from '../../proto/shared/errors.js';
import { fromStatus } from '../../proto/shared/grpc-errors.js';

/** A host as the gateway needs it. */
export interface AgentTarget {
  name: string;
  /** HOST:PORT of the agent's gRPC API (or unix:///path). */
  address: string;
}

export interface AgentGateway {
  /** Routes to the peers, and the cluster's LXR endpoints the host's containers may not reach. */
  setPeers(t: AgentTarget, peers: Peer[], protectedEndpoints?: string[]): Promise<void>;
  create(t: AgentTarget, req: CreateContainerRequest): Promise<Container>;
  start(t: AgentTarget, name: string): Promise<Container>;
  stop(t: AgentTarget, name: string, graceSeconds: number): Promise<Container>;
  remove(t: AgentTarget, name: string): Promise<void>;
  get(t: AgentTarget, name: string): Promise<Container>;
  list(t: AgentTarget, labels?: Record<string, string>): Promise<Container[]>;
  /** Pulls an image on the host: each layer's progress as it comes, then the image. */
  pull(t: AgentTarget, image: string, platform: Partial<Platform> | null, onProgress: (p: LayerProgress) => void, signal?: AbortSignal): Promise<Image>;
  listImages(t: AgentTarget): Promise<Image[]>;
  removeImage(t: AgentTarget, image: string): Promise<RemoveImageResponse>;
  /** Sends the archive at `file` (a path on the controller) to the host's Images.Load in chunks, pausing while the agent is behind. */
  loadImage(t: AgentTarget, file: string, repository: string, signal?: AbortSignal): Promise<Image[]>;
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
/** Pulls and loads of big images over slow links. */
const IMAGE_MS = 60 * 60_000;
/** Bytes per Load message: well under gRPC's 4 MiB message limit. */
const LOAD_CHUNK = 1 << 20;

/** The caller (the controller's own client) went away: what the streaming calls reject with then. */
const cancelled = (what: string): LxrError => new LxrError('LXR_UNAVAILABLE', `${what} cancelled`);

interface Clients {
  address: string;
  host: HostClient;
  containers: ContainersClient;
  exec: ExecClient;
  images: ImagesClient;
}

export class GrpcAgentGateway implements AgentGateway {
  private readonly byHost = new Map<string, Clients>();

  /** `credentials`: how to reach a host; over TCP, mutual TLS that checks the agent is that host. */
  constructor(private readonly credentials: (t: AgentTarget) => grpc.ChannelCredentials = () => grpc.credentials.createInsecure()) {}

  private of(t: AgentTarget): Clients {
    const cur = this.byHost.get(t.name);
    if (cur && cur.address === t.address) return cur;
    if (cur) this.closeClients(cur);
    const target = t.address.startsWith('unix:') ? t.address : `dns:${t.address}`;
    const creds = this.credentials(t);
    // TLS names the host (its certificate has its name); an IP address is no server name.
    const opts = { ...CHANNEL_OPTIONS, 'grpc.ssl_target_name_override': t.name };
    const c: Clients = {
      address: t.address,
      host: new HostClient(target, creds, opts),
      containers: new ContainersClient(target, creds, opts),
      exec: new ExecClient(target, creds, opts),
      images: new ImagesClient(target, creds, opts),
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

  async setPeers(t: AgentTarget, peers: Peer[], protectedEndpoints: string[] = []): Promise<void> {
    const c = this.of(t).host;
    await this.call(unary(c, c.SetPeers, { peers, protectedEndpoints }, this.deadline()));
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

  pull(t: AgentTarget, image: string, platform: Partial<Platform> | null, onProgress: (p: LayerProgress) => void, signal?: AbortSignal): Promise<Image> {
    const c = this.of(t).images;
    return new Promise<Image>((resolve, reject) => {
      if (signal?.aborted) return reject(cancelled('pull'));
      const call = c.Pull({ image, ...(platform ? { platform } : {}) }, new grpc.Metadata(), this.deadline(IMAGE_MS));
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      let got: Image | null = null;
      call.on('data', (m: PullResponse) => {
        if (m.progress) onProgress(m.progress);
        if (m.image) got = m.image;
      });
      call.on('error', (e) => {
        signal?.removeEventListener('abort', onAbort);
        reject(signal?.aborted ? cancelled('pull') : fromStatus(e));
      });
      call.on('end', () => {
        signal?.removeEventListener('abort', onAbort);
        if (got) resolve(got);
        else reject(new LxrError('LXR_INTERNAL', 'the pull ended without an image'));
      });
    });
  }

  async listImages(t: AgentTarget): Promise<Image[]> {
    const c = this.of(t).images;
    return (await this.call(unary(c, c.List, {}, this.deadline()))).images;
  }

  async removeImage(t: AgentTarget, image: string): Promise<RemoveImageResponse> {
    const c = this.of(t).images;
    return this.call(unary(c, c.Remove, { image }, this.deadline()));
  }

  loadImage(t: AgentTarget, file: string, repository: string, signal?: AbortSignal): Promise<Image[]> {
    const c = this.of(t).images;
    return new Promise<Image[]>((resolve, reject) => {
      if (signal?.aborted) return reject(cancelled('load'));
      let finished = false;
      let wake = (): void => {};
      const onAbort = (): void => call.cancel();
      const call = c.Load(new grpc.Metadata(), this.deadline(IMAGE_MS), (err, res) => {
        finished = true;
        wake();
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(signal?.aborted ? cancelled('load') : fromStatus(err));
        else resolve(res?.images ?? []);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      void (async () => {
        const src = createReadStream(file, { highWaterMark: LOAD_CHUNK });
        try {
          let first = true;
          for await (const chunk of src as AsyncIterable<Buffer>) {
            // The agent answered already (an early refusal): nothing more to send.
            if (finished) return;
            const room = call.write(first ? { repository, data: chunk } : { data: chunk });
            first = false;
            if (!room) {
              await new Promise<void>((r) => {
                wake = r;
                call.once('drain', r);
              });
            }
          }
          if (finished) return;
          if (first) call.write({ repository, data: Buffer.alloc(0) });
          call.end();
        } catch (e) {
          // The file could not be read: the agent must not import a truncated archive.
          call.cancel();
          reject(e);
        } finally {
          src.destroy();
        }
      })();
    });
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
    c.images.close();
  }

  close(): void {
    for (const c of this.byHost.values()) this.closeClients(c);
    this.byHost.clear();
  }
}
