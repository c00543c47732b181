// The native helper as the runtime sees it: start a container's monitor
// from a plan file, or exec a process into a running container; both
// answer in one-line JSON reports (native/PLAN.md). A Linux implementation
// spawns lxr-shim; a fake records calls so the runtime is testable without root.
import { spawn, type StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { LxrError, type Reason } from '../../proto/shared/errors.js';

export interface ShimReport {
  type: 'created' | 'started' | 'error' | 'exited';
  pid?: number;
  monitor?: number;
  exitCode?: number;
  signal?: number;
  oomKilled?: boolean;
  step?: string;
  errno?: string;
  errnum?: number;
  message?: string;
}

/** stdio for the helper: file descriptors to pass, or 'ignore'. */
export type ShimStdio = [number | 'ignore', number | 'ignore', number | 'ignore'];

export interface ShimProcess {
  /** The first report: created/started, or the error (already thrown as LxrError). */
  readonly first: ShimReport;
  /** Resolves with the exit report, or null when the reporter went away before it. */
  readonly exited: Promise<ShimReport | null>;
  /** Stop listening (the process keeps running). */
  detach(): void;
}

export interface ShimLauncher {
  create(planFile: string, stdio: ShimStdio): Promise<ShimProcess>;
  exec(planFile: string, stdio: ShimStdio): Promise<ShimProcess>;
}

/** Maps a helper's error report to the catalogue: the errno decides the code. */
export function reportToError(r: ShimReport, what: string): LxrError {
  let reason: Reason = 'LXR_HOST_SETUP_FAILED';
  if (r.exitCode === 127) reason = 'LXR_EXEC_NOT_FOUND';
  else if (r.exitCode === 126) reason = 'LXR_EXEC_NOT_EXECUTABLE';
  else if (r.errno === 'ENOENT') reason = 'LXR_NOT_FOUND';
  else if (r.errno === 'EPERM' || r.errno === 'EACCES') reason = 'LXR_PERMISSION_DENIED';
  else if (r.errno === 'EINVAL' && r.step === 'read plan') reason = 'LXR_INTERNAL';
  const err = new LxrError(reason, `${what}: ${r.step ? r.step + ': ' : ''}${r.message ?? 'failed'}`, {
    ...(r.errno ? { errno: r.errno } : {}),
    ...(r.step ? { step: r.step } : {}),
  });
  if (r.exitCode !== undefined) (err as LxrError & { exitCode?: number }).exitCode = r.exitCode;
  return err;
}

/** Reads newline-delimited JSON reports from a stream, one at a time. */
export class ReportReader {
  private buf = '';
  private queue: ShimReport[] = [];
  private waiters: Array<(r: ShimReport | null) => void> = [];
  private ended = false;

  constructor(private readonly stream: Readable) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (!line.trim()) continue;
        let r: ShimReport;
        try {
          r = JSON.parse(line) as ShimReport;
        } catch {
          r = { type: 'error', step: 'report', message: `unreadable report: ${line}` };
        }
        const w = this.waiters.shift();
        if (w) w(r);
        else this.queue.push(r);
      }
    });
    const end = () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  next(): Promise<ShimReport | null> {
    const r = this.queue.shift();
    if (r) return Promise.resolve(r);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    this.stream.destroy();
  }
}

export function defaultShimPath(): string {
  if (process.env.LXR_SHIM) return process.env.LXR_SHIM;
  // dist/agent/runtime/shim.js or agent/runtime/shim.ts -> <repo>/native/build/lxr-shim
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'native', 'build', 'lxr-shim');
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  return 'lxr-shim';
}

export class LinuxShimLauncher implements ShimLauncher {
  constructor(private readonly shimPath: string = defaultShimPath()) {}

  create(planFile: string, stdio: ShimStdio): Promise<ShimProcess> {
    return this.run('create', planFile, stdio);
  }

  exec(planFile: string, stdio: ShimStdio): Promise<ShimProcess> {
    return this.run('exec', planFile, stdio);
  }

  private async run(mode: 'create' | 'exec', planFile: string, stdio: ShimStdio): Promise<ShimProcess> {
    const child = spawn(this.shimPath, [mode, planFile], { stdio: [...stdio, 'pipe'] as StdioOptions });
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const stream = child.stdio[3] as Readable;
    const reader = new ReportReader(stream);
    const first = await Promise.race([
      reader.next(),
      spawnError.then((e) => ({ type: 'error', step: 'start helper', message: `${this.shimPath}: ${e.message}` }) as ShimReport),
    ]);
    if (!first || first.type === 'error') {
      reader.close();
      throw reportToError(first ?? { type: 'error', message: 'the helper exited without a report' }, mode);
    }
    let exitCode: number | null = null;
    const childExit = new Promise<void>((resolve) => child.once('exit', (code) => { exitCode = code; resolve(); }));
    const exited = (async () => {
      const r = await reader.next();
      if (r) return r;
      if (mode === 'exec') {
        // The exec helper's own exit status is the process's.
        await childExit;
        return exitCode === null ? null : ({ type: 'exited', exitCode } as ShimReport);
      }
      return null;
    })();
    child.unref();
    return {
      first,
      exited,
      detach: () => reader.close(),
    };
  }
}

/** Records what the runtime asked for; answers with scripted reports. */
export class FakeShimLauncher implements ShimLauncher {
  readonly calls: Array<{ mode: 'create' | 'exec'; planFile: string; stdio: ShimStdio }> = [];
  nextPid = 4242;
  failWith: ShimReport | null = null;

  private answer(mode: 'create' | 'exec', planFile: string, stdio: ShimStdio): Promise<ShimProcess> {
    this.calls.push({ mode, planFile, stdio });
    if (this.failWith) return Promise.reject(reportToError(this.failWith, mode));
    const pid = this.nextPid++;
    return Promise.resolve({
      first: { type: mode === 'create' ? 'created' : 'started', pid, monitor: pid - 1 },
      exited: new Promise<ShimReport | null>(() => {}),
      detach: () => {},
    });
  }

  create(planFile: string, stdio: ShimStdio) {
    return this.answer('create', planFile, stdio);
  }

  exec(planFile: string, stdio: ShimStdio) {
    return this.answer('exec', planFile, stdio);
  }
}
