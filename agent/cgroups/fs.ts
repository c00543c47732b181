// The cgroup filesystem as the backends see it: a handful of file and
// directory operations on cgroupfs/cgroup2 mounts. A Linux implementation,
// and an in-memory fake that records every call so planning runs without root.

import * as fs from 'node:fs';
import { constants } from 'node:fs';
import { posix } from 'node:path';

export interface CgroupFs {
  readFile(path: string): Promise<string>;
  /** Writes an existing control file in one write(2); never creates files (cgroupfs cannot). */
  writeFile(path: string, data: string): Promise<void>;
  /** Not recursive: fails with EEXIST/ENOENT like mkdir(2). */
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  /** Names of the child directories (child cgroups) of a directory. */
  subdirs(path: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
}

/** The errno name of a failed call, whether it came from node:fs or was already mapped. */
export function errnoOf(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  // node:fs puts the name in `code`; LxrError keeps a numeric gRPC `code` and the name in `errno`.
  const { code, errno } = e as { code?: unknown; errno?: unknown };
  if (typeof code === 'string') return code;
  return typeof errno === 'string' ? errno : undefined;
}

/**
 * cgroupfs lives in kernel memory: each call takes microseconds, less than
 * the thread-pool round trip an async call costs, and container start makes
 * dozens of them. So the Linux implementation calls the kernel synchronously
 * behind the async interface.
 */
export const linuxFs: CgroupFs = {
  readFile: async (path) => fs.readFileSync(path, 'utf8'),
  async writeFile(path, data) {
    // O_WRONLY without O_CREAT/O_TRUNC: a missing control file must fail with
    // ENOENT, and the kernel parses exactly one write per value.
    const fd = fs.openSync(path, constants.O_WRONLY);
    let failure: unknown;
    try {
      fs.writeSync(fd, data);
    } catch (e) {
      failure = e;
    }
    try {
      fs.closeSync(fd);
    } catch (e) {
      failure ??= e;
    }
    if (failure !== undefined) throw failure;
  },
  mkdir: async (path) => {
    fs.mkdirSync(path);
  },
  rmdir: async (path) => fs.rmdirSync(path),
  async subdirs(path) {
    return fs
      .readdirSync(path, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  },
  async exists(path) {
    try {
      fs.accessSync(path);
      return true;
    } catch (e) {
      if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return false;
      throw e;
    }
  },
};

export type FakeOp = 'readFile' | 'writeFile' | 'mkdir' | 'rmdir' | 'subdirs' | 'exists';

export interface FakeCall {
  op: FakeOp;
  path: string;
  data?: string;
}

interface Fault {
  op: FakeOp;
  path: string;
  code: string;
  data?: string;
  times: number;
}

function errnoError(code: string, op: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${op} '${path}'`), { code, syscall: op, path });
}

/**
 * An in-memory cgroup tree. It behaves like cgroupfs where planning depends on
 * it: writes never create files, rmdir removes a directory's control files
 * with it but refuses (EBUSY) while it has child cgroups or processes.
 */
export class FakeCgroupFs implements CgroupFs {
  readonly calls: FakeCall[] = [];
  private readonly dirs = new Set<string>(['/']);
  private readonly files = new Map<string, string>();
  private readonly faults: Fault[] = [];
  /** Lets a test play the kernel: populate a new cgroup's control files. */
  onMkdir?: (dir: string, fs: FakeCgroupFs) => void;
  /** Lets a test play the kernel on writes (e.g. cgroup.kill emptying cgroup.procs). */
  onWrite?: (path: string, data: string, fs: FakeCgroupFs) => void;

  addDir(path: string): this {
    const p = posix.normalize(path);
    if (p !== '/') this.addDir(posix.dirname(p));
    this.dirs.add(p);
    return this;
  }

  setFile(path: string, content: string): this {
    const p = posix.normalize(path);
    this.addDir(posix.dirname(p));
    this.files.set(p, content);
    return this;
  }

  removeFile(path: string): this {
    this.files.delete(posix.normalize(path));
    return this;
  }

  file(path: string): string | undefined {
    return this.files.get(posix.normalize(path));
  }

  hasDir(path: string): boolean {
    return this.dirs.has(posix.normalize(path));
  }

  /** Makes the next `times` calls of `op` on `path` (optionally with exactly `data`) fail with `code`. */
  failOn(op: FakeOp, path: string, code: string, opts: { data?: string; times?: number } = {}): this {
    this.faults.push({ op, path: posix.normalize(path), code, times: opts.times ?? Infinity, ...(opts.data !== undefined ? { data: opts.data } : {}) });
    return this;
  }

  /** The recorded calls of one kind, as [path, data] or paths. */
  writes(): Array<[string, string]> {
    return this.calls.filter((c) => c.op === 'writeFile').map((c) => [c.path, c.data ?? '']);
  }

  pathsOf(op: FakeOp): string[] {
    return this.calls.filter((c) => c.op === op).map((c) => c.path);
  }

  private enter(op: FakeOp, path: string, data?: string): string {
    const p = posix.normalize(path);
    this.calls.push({ op, path: p, ...(data !== undefined ? { data } : {}) });
    const fault = this.faults.find((f) => f.op === op && f.path === p && f.times > 0 && (f.data === undefined || f.data === data));
    if (fault) {
      fault.times -= 1;
      throw errnoError(fault.code, op, p);
    }
    return p;
  }

  async readFile(path: string): Promise<string> {
    const p = this.enter('readFile', path);
    const content = this.files.get(p);
    if (content === undefined) throw errnoError(this.dirs.has(p) ? 'EISDIR' : 'ENOENT', 'open', p);
    return content;
  }

  async writeFile(path: string, data: string): Promise<void> {
    const p = this.enter('writeFile', path, data);
    if (!this.files.has(p)) throw errnoError('ENOENT', 'open', p);
    this.files.set(p, data);
    this.onWrite?.(p, data, this);
  }

  async mkdir(path: string): Promise<void> {
    const p = this.enter('mkdir', path);
    if (this.dirs.has(p) || this.files.has(p)) throw errnoError('EEXIST', 'mkdir', p);
    if (!this.dirs.has(posix.dirname(p))) throw errnoError('ENOENT', 'mkdir', p);
    this.dirs.add(p);
    this.onMkdir?.(p, this);
  }

  async rmdir(path: string): Promise<void> {
    const p = this.enter('rmdir', path);
    if (!this.dirs.has(p)) throw errnoError(this.files.has(p) ? 'ENOTDIR' : 'ENOENT', 'rmdir', p);
    if (this.childDirs(p).length > 0) throw errnoError('EBUSY', 'rmdir', p);
    if ((this.files.get(posix.join(p, 'cgroup.procs')) ?? '').trim() !== '') throw errnoError('EBUSY', 'rmdir', p);
    for (const f of [...this.files.keys()]) if (posix.dirname(f) === p) this.files.delete(f);
    this.dirs.delete(p);
  }

  async subdirs(path: string): Promise<string[]> {
    const p = this.enter('subdirs', path);
    if (!this.dirs.has(p)) throw errnoError('ENOENT', 'scandir', p);
    return this.childDirs(p).map((d) => posix.basename(d));
  }

  async exists(path: string): Promise<boolean> {
    const p = this.enter('exists', path);
    return this.dirs.has(p) || this.files.has(p);
  }

  private childDirs(p: string): string[] {
    return [...this.dirs].filter((d) => d !== p && posix.dirname(d) === p).sort();
  }
}
