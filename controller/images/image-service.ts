// Images across the cluster: a request names hosts (none: every Ready host)
// and goes to each host's agent at once; answers and failures are per host.
// An import is spooled to a file under the controller's root first, so each
// host is sent the whole archive at its own pace. A plain class: no gRPC.
//
// Decisions: cordoned hosts are Ready hosts (cordoning stops placement, not
// images); a Pull, Remove or Import that fails on some host fails as a whole
// only once every host is done, with the first failure, its message naming
// the host and saying where it worked.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Platform } from '../../proto/shared/api-types.js';
import type { ClusterPullImageResponse, HostImage, HostImageRemoval, HostImages } from '../../proto/shared/controller-types.js';
import { asLxrError, failAfterCleanup, invalidArgument, LxrError } from '../../proto/shared/errors.js';
import type { Logger } from '../../proto/shared/log.js';
import type { AgentGateway, AgentTarget } from '../agents/agent-gateway.js';
import type { HostRegistry } from '../hosts/host-registry.js';

export interface ClusterImageServiceOptions {
  hosts: HostRegistry;
  gateway: AgentGateway;
  /** Where imports are spooled while they are sent to hosts (<controller root>/imports). */
  spoolDir: string;
  log?: Logger;
}

export interface PullRequest {
  image?: string;
  hosts?: string[];
  platform?: Partial<Platform> | null;
}

export interface ImportHeader {
  hosts?: string[];
  repository?: string;
}

const required = (v: string | undefined, field: string): string => {
  if (!v) throw invalidArgument(field, 'is required');
  return v;
};

export class ClusterImageService {
  /** Spool files of imports in progress: anything else in spoolDir is left over from a crash. */
  private readonly spooling = new Set<string>();

  constructor(private readonly o: ClusterImageServiceOptions) {}

  /**
   * The hosts a request goes to: the named ones, each known (NOT_FOUND
   * naming it) and Ready (UNAVAILABLE naming it); none named: every Ready
   * host, and UNAVAILABLE when there is none.
   */
  targets(names: readonly string[] | undefined, field = 'hosts'): AgentTarget[] {
    const h = this.o.hosts;
    const wanted = [...new Set(names ?? [])];
    if (wanted.length === 0) {
      const all = h.names();
      const ready = all.filter((n) => h.isReady(n));
      if (ready.length === 0) throw new LxrError('LXR_UNAVAILABLE', all.length === 0 ? 'no host has joined the cluster' : `no host is Ready (NotReady: ${all.join(', ')})`);
      return ready.map((n) => ({ name: n, address: h.record(n)!.address }));
    }
    return wanted.map((n) => {
      if (!n) throw invalidArgument(field, 'a host name is empty');
      const rec = h.record(n);
      if (!rec) throw new LxrError('LXR_NOT_FOUND', `host ${JSON.stringify(n)} not found`, { field });
      if (!h.isReady(n)) throw new LxrError('LXR_UNAVAILABLE', `host ${n} is NotReady`);
      return { name: rec.name, address: rec.address };
    });
  }

  /** Pulls on every target at once; `send` gets each host's layer progress, then its image. */
  async pull(req: PullRequest, send: (ev: ClusterPullImageResponse) => void, signal?: AbortSignal): Promise<void> {
    const image = required(req.image, 'image');
    const targets = this.targets(req.hosts);
    await this.eachHost('pull', targets, async (t) => {
      const img = await this.o.gateway.pull(t, image, req.platform ?? null, (progress) => send({ host: t.name, progress }), signal);
      send({ host: t.name, image: img });
    });
  }

  /** Every target's images; a host that does not answer is listed in `unreachable` with why. */
  async list(host?: string): Promise<{ images: HostImage[]; unreachable: string[] }> {
    const targets = this.targets(host ? [host] : [], 'host');
    const unreachable: string[] = [];
    const per = await Promise.all(
      targets.map((t) =>
        this.o.gateway.listImages(t).then(
          (images) => images.map((image) => ({ host: t.name, image })),
          (e: unknown) => {
            unreachable.push(`${t.name}: ${asLxrError(e).message}`);
            return [];
          },
        ),
      ),
    );
    return { images: per.flat(), unreachable: unreachable.sort() };
  }

  /** Removes the name on every target that has it; NOT_FOUND when none has it. */
  async remove(req: { image?: string; hosts?: string[] }): Promise<HostImageRemoval[]> {
    const image = required(req.image, 'image');
    const targets = this.targets(req.hosts);
    const results = await this.eachHost('remove', targets, async (t): Promise<HostImageRemoval | null> => {
      try {
        const r = await this.o.gateway.removeImage(t, image);
        return { host: t.name, untagged: r.untagged, deleted: r.deleted };
      } catch (e) {
        if (e instanceof LxrError && e.reason === 'LXR_NOT_FOUND') return null;
        throw e;
      }
    });
    const removed = results.filter((r): r is HostImageRemoval => r !== null);
    if (removed.length === 0) {
      const where = targets.length === 1 ? `host ${targets[0]!.name}` : `any of the hosts ${targets.map((t) => t.name).join(', ')}`;
      throw new LxrError('LXR_NOT_FOUND', `image ${JSON.stringify(image)} not found on ${where}`, { field: 'image' });
    }
    return removed;
  }

  /**
   * Imports an archive streamed by the client: the targets are checked
   * before any byte is read, the bytes are spooled to a file (each chunk
   * written before the next is read: a slow disk pauses the client), and
   * the file is loaded onto every target at once. The file always goes.
   */
  async import(header: ImportHeader, data: AsyncIterable<Buffer>, signal?: AbortSignal): Promise<HostImages[]> {
    const targets = this.targets(header.hosts, 'header.hosts');
    const file = await this.spoolFile();
    try {
      const bytes = await spool(data, file);
      if (bytes === 0) throw invalidArgument('data', 'no archive was sent: the stream carried no bytes');
      this.o.log?.info({ bytes, hosts: targets.map((t) => t.name) }, 'image archive received; loading it onto the hosts');
      const out = await this.eachHost('import', targets, async (t) => ({ host: t.name, images: await this.o.gateway.loadImage(t, file, header.repository ?? '', signal) }));
      await rm(file, { force: true });
      return out;
    } catch (e) {
      return failAfterCleanup(e, [() => rm(file, { force: true })]);
    } finally {
      this.spooling.delete(file);
    }
  }

  /** A fresh spool file's path; removes what a crashed controller left in the spool dir. */
  private async spoolFile(): Promise<string> {
    await mkdir(this.o.spoolDir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.o.spoolDir)) {
      const p = path.join(this.o.spoolDir, name);
      if (!this.spooling.has(p)) await rm(p, { recursive: true, force: true });
    }
    const file = path.join(this.o.spoolDir, `import-${randomBytes(8).toString('hex')}.tar`);
    this.spooling.add(file);
    return file;
  }

  /**
   * Runs `fn` on every target at once and waits for all; when some failed,
   * throws the first failure (its reason kept) as "host NAME: ...".
   */
  private async eachHost<T>(what: string, targets: AgentTarget[], fn: (t: AgentTarget) => Promise<T>): Promise<T[]> {
    const failures: Array<{ host: string; err: LxrError }> = [];
    const results = await Promise.all(
      targets.map((t) =>
        fn(t).catch((e: unknown) => {
          const err = asLxrError(e);
          failures.push({ host: t.name, err });
          this.o.log?.warn({ host: t.name, err: e }, `image ${what} failed on a host`);
          return undefined as T;
        }),
      ),
    );
    const first = failures[0];
    if (!first) return results;
    const failed = targets.map((t) => t.name).filter((n) => failures.some((f) => f.host === n));
    const done = targets.map((t) => t.name).filter((n) => !failed.includes(n));
    const where = targets.length > 1 ? ` (${[done.length ? `done on ${done.join(', ')}` : '', `failed on ${failed.join(', ')}`].filter(Boolean).join('; ')})` : '';
    const e = first.err;
    throw new LxrError(e.reason, `host ${first.host}: ${e.message}${where}`, { cause: e, ...(e.field !== undefined ? { field: e.field } : {}) });
  }
}

async function spool(data: AsyncIterable<Buffer>, file: string): Promise<number> {
  const fh = await open(file, 'wx', 0o600);
  let bytes = 0;
  try {
    for await (const chunk of data) {
      if (chunk.length === 0) continue;
      await fh.write(chunk);
      bytes += chunk.length;
    }
  } finally {
    await fh.close();
  }
  return bytes;
}
