// An AgentGateway without agents: containers and images per host kept in
// memory, every call recorded, and a host made unreachable, one call made to
// fail or held until released on demand, so the controller's workspace, peer
// and image logic is tested without root, processes or sockets. It answers
// as an agent does (names unique per host, a create repeated with the same
// request id returns the container, unknown images NOT_FOUND).
import { readFile } from 'node:fs/promises';
import { LxrError, alreadyExists, illegalState, invalidArgument, notFound } from '../../proto/shared/errors.js';
import type { Container, CreateContainerRequest, Image, LayerProgress, Peer, Platform, RemoveImageResponse } from '../../proto/shared/api-types.js';
import type { AgentGateway, AgentTarget } from './agent-gateway.js';

export type FakeOp = 'setPeers' | 'create' | 'start' | 'stop' | 'remove' | 'get' | 'list' | 'pull' | 'listImages' | 'removeImage' | 'loadImage';

export interface FakeCall {
  op: FakeOp | 'reset';
  host: string;
  name?: string;
  requestId?: string;
  labels?: Record<string, string>;
  graceSeconds?: number;
  peers?: Peer[];
  protectedEndpoints?: string[];
  image?: string;
  /** loadImage: the file sent and its size, read when the call came (so the file was there then). */
  file?: string;
  bytes?: number;
  repository?: string;
}

/** What the fake's "registry" serves for a reference: the image and its layers. */
export interface FakeImage {
  image: Image;
  layers: string[];
}

/** A fake image record: `name` is its only name, the digest made from `id`. */
export function fakeImage(name: string, id = name): Image {
  const hex = Buffer.from(id).toString('hex').padEnd(64, '0').slice(0, 64);
  return { names: [name], digest: `sha256:${hex}`, configDigest: `sha256:${hex.split('').reverse().join('')}`, platform: { os: 'linux', architecture: 'amd64', variant: '' }, sizeBytes: 1000, created: '2024-01-01T00:00:00.000Z' };
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
  private readonly failures = new Map<FakeOp, Array<{ err: LxrError; host?: string }>>();
  private readonly held = new Map<FakeOp, Array<{ p: Promise<void>; host?: string }>>();
  /** Per host: image records by digest. */
  private readonly imagesOf = new Map<string, Map<string, Image>>();
  /** What pulls find, by reference; what loads make, by archive content. */
  private readonly published = new Map<string, FakeImage>();
  private readonly archives = new Map<string, Image[]>();
  private clock = 0;

  /** Every call to the host rejects with LXR_UNAVAILABLE until up(). */
  down(host: string): void {
    this.unreachable.add(host);
  }

  up(host: string): void {
    this.unreachable.delete(host);
  }

  /** The next call of `op` (to `host`, else to any reachable host) rejects with `err`; queued in order. */
  failNext(op: FakeOp, err: LxrError, host?: string): void {
    const q = this.failures.get(op) ?? [];
    q.push({ err, ...(host !== undefined ? { host } : {}) });
    this.failures.set(op, q);
  }

  /** Calls of `op` (to `host`, else to any host) from now on wait, once recorded, until the returned function is called. */
  hold(op: FakeOp, host?: string): () => void {
    let release!: () => void;
    const h = { p: new Promise<void>((r) => (release = r)), ...(host !== undefined ? { host } : {}) };
    const q = this.held.get(op) ?? [];
    q.push(h);
    this.held.set(op, q);
    return () => {
      this.held.set(op, (this.held.get(op) ?? []).filter((x) => x !== h));
      release();
    };
  }

  /** A pull of `ref` (as written) finds this image, with these layer digests. */
  publish(ref: string, image: Image, layers: string[] = ['sha256:' + 'a'.repeat(64)]): void {
    this.published.set(ref, { image: structuredClone(image), layers: [...layers] });
  }

  /** A load of an archive holding exactly `content` makes these images. */
  archive(content: string | Buffer, images: Image[]): void {
    this.archives.set(Buffer.from(content).toString('base64'), structuredClone(images));
  }

  /** Puts an image on a host without a call. */
  seedImage(host: string, image: Image): void {
    this.addImage(host, image);
  }

  /** The host's images (copies), by first name. */
  images(host: string): Image[] {
    return [...(this.imagesOf.get(host)?.values() ?? [])].map((i) => structuredClone(i)).sort((a, b) => (a.names[0] ?? a.digest).localeCompare(b.names[0] ?? b.digest));
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

  async setPeers(t: AgentTarget, peers: Peer[], protectedEndpoints: string[] = []): Promise<void> {
    await this.enter({ op: 'setPeers', host: t.name, peers: structuredClone(peers), protectedEndpoints: [...protectedEndpoints] });
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

  async pull(t: AgentTarget, image: string, _platform: Partial<Platform> | null, onProgress: (p: LayerProgress) => void, signal?: AbortSignal): Promise<Image> {
    await this.enter({ op: 'pull', host: t.name, image });
    if (signal?.aborted) throw new LxrError('LXR_UNAVAILABLE', 'pull cancelled');
    const found = this.published.get(image);
    if (!found) throw new LxrError('LXR_NOT_FOUND', `manifest ${image} not found on the fake registry`);
    for (const digest of found.layers) {
      onProgress({ digest, state: 'downloading', current: 0, total: 100 });
      onProgress({ digest, state: 'done', current: 100, total: 100 });
    }
    return this.addImage(t.name, found.image);
  }

  async listImages(t: AgentTarget): Promise<Image[]> {
    await this.enter({ op: 'listImages', host: t.name });
    return this.images(t.name);
  }

  async removeImage(t: AgentTarget, image: string): Promise<RemoveImageResponse> {
    await this.enter({ op: 'removeImage', host: t.name, image });
    const imgs = this.imagesOf.get(t.name);
    const rec = [...(imgs?.values() ?? [])].find((i) => i.names.includes(image) || i.digest === image);
    if (!imgs || !rec) throw notFound('image', image);
    const untagged = rec.digest === image ? [...rec.names] : [image];
    rec.names = rec.names.filter((n) => !untagged.includes(n));
    if (rec.names.length > 0) return { untagged, deleted: '' };
    imgs.delete(rec.digest);
    return { untagged, deleted: rec.digest };
  }

  async loadImage(t: AgentTarget, file: string, repository: string, signal?: AbortSignal): Promise<Image[]> {
    // Read before failing or holding: what the agent would have been sent (a missing file rejects).
    const data = await readFile(file);
    await this.enter({ op: 'loadImage', host: t.name, file, repository, bytes: data.length });
    if (signal?.aborted) throw new LxrError('LXR_UNAVAILABLE', 'load cancelled');
    if (data.length === 0) throw invalidArgument('data', 'no archive was sent: the stream carried no bytes');
    const made = this.archives.get(data.toString('base64'));
    if (!made) throw invalidArgument('data', 'the archive is neither an OCI image layout (no oci-layout) nor a docker save archive (no manifest.json)');
    return made.map((i) => this.addImage(t.name, i));
  }

  reset(name: string): void {
    this.calls.push({ op: 'reset', host: name });
  }

  clients(t: AgentTarget): never {
    throw new LxrError('LXR_UNSUPPORTED', `the fake gateway has no gRPC clients (host ${t.name}): exec and logs need a real agent`);
  }

  close(): void {}

  // ----------------------------------------------------------- inside

  /**
   * Records the call, holds it while the test holds its op, then fails it
   * as the test asked; async so callers interleave as with a real agent.
   */
  private async enter(call: FakeCall): Promise<void> {
    this.calls.push(call);
    await Promise.resolve();
    await Promise.all((this.held.get(call.op as FakeOp) ?? []).filter((h) => h.host === undefined || h.host === call.host).map((h) => h.p));
    if (this.unreachable.has(call.host)) throw new LxrError('LXR_UNAVAILABLE', `host ${call.host} is unreachable (fake gateway: down)`);
    const q = this.failures.get(call.op as FakeOp);
    const i = q?.findIndex((f) => f.host === undefined || f.host === call.host) ?? -1;
    if (!q || i < 0) return;
    const [f] = q.splice(i, 1);
    if (q.length === 0) this.failures.delete(call.op as FakeOp);
    throw f!.err;
  }

  /** Records an image on a host as an agent does: its names move to it from any other image. */
  private addImage(host: string, image: Image): Image {
    let imgs = this.imagesOf.get(host);
    if (!imgs) {
      imgs = new Map();
      this.imagesOf.set(host, imgs);
    }
    for (const other of imgs.values()) if (other.digest !== image.digest) other.names = other.names.filter((n) => !image.names.includes(n));
    const cur = imgs.get(image.digest);
    const rec = cur ? { ...cur, names: [...new Set([...cur.names, ...image.names])] } : structuredClone(image);
    imgs.set(image.digest, rec);
    return structuredClone(rec);
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
      ide: req.ide ?? '',
      ideStatus: '',
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
