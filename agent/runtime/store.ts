// The runtime's state directory: one directory per container holding its
// record (state.json), launch plan, control socket, exit record and log.
// Records are written atomically (write, fsync, rename) so a crash leaves
// either the old record or the new one, never half of one.
//
// The files are small and live on /run: the calls are synchronous, because
// a thread-pool round trip costs more than the call on the container start
// path.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { startTimeSync } from '../../proto/shared/proc.js';
import { alreadyExists, invalidArgument, LxrError, notFound } from '../../proto/shared/errors.js';
import type { Spec } from './oci.js';

export interface ContainerRecord {
  ociVersion: string;
  id: string;
  bundle: string;
  rootfs: string;
  pid: number;
  /** /proc/PID/stat start time: tells our init from a later process that reused its pid. */
  pidStartTime: string;
  monitorPid: number;
  created: string;
  cgroupPath: string | null;
  annotations: Record<string, string>;
  /** The spec the container was created from: exec reuses its namespaces and process defaults. */
  spec: Spec;
}

export interface ExitRecord {
  pid: number;
  exitCode: number;
  signal: number;
  oomKilled: boolean;
  exitedAt: string;
  error?: string;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkId(id: string): void {
  if (!ID_RE.test(id)) {
    throw invalidArgument('id', `${JSON.stringify(id)} must be 1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit`);
  }
}

/**
 * Write to a temporary name, then rename: readers see the old or the new
 * content, never a mix. `durable` adds an fsync for state that must survive
 * power loss; the runtime's own state lives under /run, gone at reboot
 * anyway, so it skips that cost on the container start path.
 */
export async function writeAtomic(file: string, data: string | Buffer, mode = 0o600, durable = true): Promise<void> {
  writeAtomicSync(file, data, mode, durable);
}

/** writeAtomic without a turn of the event loop in between (read-modify-write stays whole). */
export function writeAtomicSync(file: string, data: string | Buffer, mode = 0o600, durable = true): void {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  writeAtomicBody(tmp, data, mode, durable);
  renameSync(tmp, file);
}

/** The temporary file of an atomic write: created, written, fsynced when durable. */
function writeAtomicBody(tmp: string, data: string | Buffer, mode: number, durable: boolean): void {
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A record written ahead of its time: see stageAtomic. */
export interface StagedWrite {
  /** Puts the content in place (rename), once it is on disk. */
  commit(): Promise<void>;
  /** Drops it (nothing was put in place). */
  discard(): Promise<void>;
}

/**
 * writeAtomic (durable) in two halves, for a record whose content is known
 * before it may be put in place: written and fsynced under a temporary
 * name now (by a caller with time on its hands, such as while the helper
 * makes a container: synchronously, because a thread-pool round trip
 * wakes two more threads); commit() renames it into place. The temporary
 * name is writeAtomic's, so a crash in between leaves what a repair
 * already removes.
 */
export function stageAtomic(file: string, data: string | Buffer, mode = 0o600): StagedWrite {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeAtomicBody(tmp, data, mode, true);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return {
    async commit() {
      renameSync(tmp, file);
    },
    async discard() {
      rmSync(tmp, { force: true });
    },
  };
}

export { startTimeSync };

let ownStart: string | undefined;
/** This process's start time, read once (its /proc stat costs a quarter of a millisecond in a busy agent). */
function ownStartTime(): string {
  return (ownStart ??= startTimeSync(process.pid) ?? '');
}

export class StateStore {
  constructor(readonly root: string) {}

  dir(id: string): string {
    checkId(id);
    return path.join(this.root, id);
  }

  paths(id: string) {
    const d = this.dir(id);
    return {
      dir: d,
      state: path.join(d, 'state.json'),
      plan: path.join(d, 'plan'),
      control: path.join(d, 'ctl.sock'),
      exit: path.join(d, 'exit.json'),
      log: path.join(d, 'container.log'),
    };
  }

  /**
   * Claims the id: fails with ALREADY_EXISTS if a container has it. `notes`
   * is what a repair needs should the create die (its cgroup), in the same
   * file: one write less on the create path.
   */
  async claim(id: string, notes: { cgroup?: string } = {}): Promise<void> {
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const dir = this.dir(id);
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // A create that died between claim and its record leaves only the
      // claim: reclaim it when its creator is gone, or the id is lost.
      if (!this.staleClaim(id)) throw alreadyExists('container', id);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { mode: 0o700 });
    }
    // The claimer's pid and start time: a reused pid is not mistaken for it.
    const lines = [`${process.pid} ${ownStartTime()}`, ...Object.entries(notes).map(([k, v]) => `${k} ${v}`)];
    writeFileSync(path.join(dir, 'claim'), lines.join('\n') + '\n');
  }

  /** The claim's first line (claimer pid and start time) and its notes; null when there is none to read. */
  private readClaim(id: string): { pid: number; start: string; notes: Map<string, string> } | null {
    let text: string;
    try {
      text = readFileSync(path.join(this.dir(id), 'claim'), 'utf8');
    } catch {
      return null;
    }
    const [first = '', ...rest] = text.split('\n');
    const [pid, start = ''] = first.split(' ');
    const notes = new Map(rest.filter((l) => l.includes(' ')).map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)] as const));
    return { pid: Number(pid), start, notes };
  }

  /** What the claim of `id` noted for a repair (see claim), or the separate file earlier agents wrote. */
  readNote(id: string, key: 'cgroup'): string | null {
    const noted = this.readClaim(id)?.notes.get(key);
    if (noted !== undefined) return noted;
    try {
      return readFileSync(path.join(this.dir(id), `claim-${key}`), 'utf8');
    } catch {
      return null;
    }
  }

  /** A claim without a record whose creator is gone: a create that crashed. */
  staleClaim(id: string): boolean {
    const p = this.paths(id);
    if (existsSync(p.state)) return false;
    const claim = this.readClaim(id);
    if (!claim) return false; // mid-claim, or not ours to judge
    const now = startTimeSync(claim.pid);
    return now === null || (claim.start !== '' && now !== claim.start);
  }

  async write(rec: ContainerRecord): Promise<void> {
    await writeAtomic(this.paths(rec.id).state, JSON.stringify(rec), 0o600, false);
  }

  async read(id: string): Promise<ContainerRecord> {
    let text: string;
    try {
      text = readFileSync(this.paths(id).state, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw notFound('container', id);
      throw e;
    }
    try {
      return JSON.parse(text) as ContainerRecord;
    } catch (e) {
      throw new LxrError('LXR_INTERNAL', `container ${JSON.stringify(id)}: state.json is corrupt`, { cause: e });
    }
  }

  async readExit(id: string): Promise<ExitRecord | null> {
    // Asked at every state(): no exception for the usual answer.
    if (!existsSync(this.paths(id).exit)) return null;
    try {
      return JSON.parse(readFileSync(this.paths(id).exit, 'utf8')) as ExitRecord;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async list(): Promise<string[]> {
    try {
      return readdirSync(this.root).filter((n) => ID_RE.test(n)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  async remove(id: string): Promise<void> {
    rmSync(this.dir(id), { recursive: true, force: true });
  }
}
