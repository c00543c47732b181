// Integration tests for the test fixtures themselves: the busybox rootfs and
// bundle builders, lxr-test-init run directly on the host (and as PID 1 of a
// fresh pid namespace), and baseConfig against `runc spec`.

import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type StdioOptions } from 'node:child_process';
import { access, constants, lstat, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { makeBundle, makeBusyboxRootfs, testInitPath } from '../helpers/rootfs.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { cleanups, tempDir, uniqueId } from '../helpers/tmp.js';

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  stdio?: StdioOptions;
  /** Called once the process has written `readyLine` to stdout. */
  onReady?: (pid: number) => void;
  readyLine?: string;
}

function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let ready = false;
    child.stdout?.on('data', (b: Buffer) => {
      stdout += b.toString();
      if (!ready && opts.readyLine !== undefined && stdout.includes(opts.readyLine) && child.pid !== undefined) {
        ready = true;
        opts.onReady?.(child.pid);
      }
    });
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const isRoot = process.getuid?.() === 0;
const init = testInitPath();

describe('makeBusyboxRootfs', () => {
  test('builds a rootfs whose busybox runs', async () => {
    const dir = join(await tempDir('rootfs'), 'rootfs');
    await makeBusyboxRootfs(dir);
    const r = await run(join(dir, 'bin', 'busybox'), ['echo', 'ok']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ok\n');
    assert.equal(await readlink(join(dir, 'bin', 'sh')), 'busybox');
    assert.equal(await readlink(join(dir, 'bin', 'ls')), 'busybox');
    await access(join(dir, 'sbin', 'lxr-test-init'), constants.X_OK);
    for (const d of ['dev', 'proc', 'sys', 'tmp', 'etc', 'root', 'home', 'var', 'run', 'usr/bin']) {
      assert.ok((await stat(join(dir, d))).isDirectory(), d);
    }
    assert.equal((await stat(dir)).mode & 0o7777, 0o755);
    assert.equal((await stat(join(dir, 'tmp'))).mode & 0o7777, 0o1777);
    if (isRoot) assert.equal((await stat(join(dir, 'home', 'lxr'))).uid, 1000);
  });

  test('has the test users and groups', async () => {
    const dir = await tempDir('rootfs');
    await makeBusyboxRootfs(dir);
    const passwd = await readFile(join(dir, 'etc', 'passwd'), 'utf8');
    const group = await readFile(join(dir, 'etc', 'group'), 'utf8');
    assert.match(passwd, /^root:x:0:0:/m);
    assert.match(passwd, /^nobody:x:65534:65534:/m);
    assert.match(passwd, /^lxr:x:1000:1000:/m);
    assert.match(group, /^root:x:0:$/m);
    assert.match(group, /^nogroup:x:65534:$/m);
    assert.match(group, /^lxr:x:1000:$/m);
    assert.match(group, /^extra:x:2000:lxr$/m);
  });

  test('each caller gets its own copy', async () => {
    const a = await tempDir('rootfs');
    const b = await tempDir('rootfs');
    await makeBusyboxRootfs(a);
    await writeFile(join(a, 'etc', 'passwd'), 'changed\n');
    await makeBusyboxRootfs(b);
    assert.match(await readFile(join(b, 'etc', 'passwd'), 'utf8'), /^root:/);
    assert.ok((await lstat(join(b, 'bin', 'sh'))).isSymbolicLink());
  });

  test('makeBundle writes config.json and the rootfs at root.path', async () => {
    const dir = await tempDir('bundle');
    const config = baseConfig({ args: ['/sbin/lxr-test-init', '--probe', 'pid'], hostname: uniqueId() });
    assert.equal(await makeBundle(dir, config), dir);
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')), config);
    await access(join(dir, 'rootfs', 'bin', 'busybox'), constants.X_OK);
  });
});

describe('lxr-test-init on the host', () => {
  test('--probe exit 7 exits 7', async () => {
    const r = await run(init, ['--probe', 'exit', '7']);
    assert.equal(r.code, 7);
  });

  test('--probe fds prints 0 1 2', async () => {
    // Whatever this process itself inherited without O_CLOEXEC (from the shell
    // that started the tests) is passed on to every child; expect those too.
    const leaked = await inheritableFds();
    const r = await run(init, ['--probe', 'fds']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, ['0', '1', '2', ...leaked.map(String)].join(' ') + '\n');
  });

  test('--probe ids reports this process ids', async () => {
    const r = await run(init, ['--probe', 'ids']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^uid=${process.getuid?.()} gid=${process.getgid?.()} groups=[0-9,]*\\n$`));
  });

  test('--probe pid prints its pid', async () => {
    let pid = 0;
    const r = await run(init, ['--probe', 'pid'], { readyLine: '\n', onReady: (p) => (pid = p) });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${pid}\n`);
  });

  test('--probe sleep sleeps and exits 0', async () => {
    const r = await run(init, ['--probe', 'sleep', '0.05']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('an unknown probe is a usage error', async () => {
    const r = await run(init, ['--probe', 'nope']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown probe/);
  });

  test('exits with the command exit code', async () => {
    const r = await run(init, ['--', '/bin/sh', '-c', 'exit 3']);
    assert.equal(r.code, 3, r.stderr);
  });

  test('a command killed by a signal gives 128+signal', async () => {
    const r = await run(init, ['--', '/bin/sh', '-c', 'kill -KILL $$']);
    assert.equal(r.code, 128 + 9);
  });

  test('forwards SIGTERM to the command', async () => {
    const r = await run(init, ['--', '/bin/sh', '-c', 'echo ready; exec sleep 30'], {
      readyLine: 'ready',
      onReady: (pid) => process.kill(pid, 'SIGTERM'),
    });
    assert.equal(r.code, 128 + 15);
  });

  test('forwards SIGUSR1 to the command', async () => {
    const r = await run(init, ['--', '/bin/sh', '-c', 'trap "exit 42" USR1; echo ready; while :; do sleep 0.05; done'], {
      readyLine: 'ready',
      onReady: (pid) => process.kill(pid, 'SIGUSR1'),
    });
    assert.equal(r.code, 42);
  });

  test('without a command it waits and exits 0 on SIGTERM', async () => {
    const c = cleanups();
    const child = spawn(init, [], { stdio: 'ignore' });
    c.add(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    try {
      const done = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, sig) => resolve([code, sig])));
      // A SIGTERM sent before it has set up its handlers would kill it, so
      // wait until the exec'd init catches SIGTERM (it blocks it first).
      await waitFor(async () => catchesTerm(await readFile(`/proc/${child.pid}/status`, 'utf8')));
      child.kill('SIGHUP'); // not a reason to exit
      child.kill('SIGTERM');
      assert.deepEqual(await done, [0, null]);
    } finally {
      await c.run();
    }
  });

  test('a missing command exits 127 with a message', async () => {
    const r = await run(init, ['--', '/nonexistent']);
    assert.equal(r.code, 127);
    assert.match(r.stderr, /\/nonexistent: No such file or directory/);
  });

  test('runs the rootfs busybox', async () => {
    const dir = await tempDir('rootfs');
    await makeBusyboxRootfs(dir);
    const r = await run(join(dir, 'sbin', 'lxr-test-init'), ['--', join(dir, 'bin', 'busybox'), 'echo', 'ok']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ok\n');
  });
});

const hasUnshare = spawnSync('unshare', ['--version']).status === 0;

describe('lxr-test-init as PID 1', { skip: !isRoot || !hasUnshare ? 'needs root and unshare(1)' : false }, () => {
  test('is pid 1 and reaps orphaned zombies', async () => {
    // The orphans exit while sh still sleeps; as PID 1 init must reap them or
    // ps shows them as Z.
    const script = '(sleep 0.05 &); (sleep 0.05 &); sleep 0.5; ps -o stat= -o comm=; exit 5';
    const r = await run('unshare', ['--pid', '--fork', '--mount-proc', init, '--', '/bin/sh', '-c', script]);
    assert.equal(r.code, 5, r.stderr);
    assert.doesNotMatch(r.stdout, /^\s*Z/m);
    const pid = await run('unshare', ['--pid', '--fork', '--mount-proc', init, '--probe', 'pid']);
    assert.equal(pid.stdout, '1\n');
  });
});

describe('baseConfig', () => {
  const hasRunc = spawnSync('runc', ['--version']).status === 0;
  test('matches `runc spec` apart from the documented differences', { skip: !hasRunc && 'runc not installed' }, async () => {
    const dir = await tempDir('runc-spec');
    const r = spawnSync('runc', ['spec'], { cwd: dir });
    assert.equal(r.status, 0, r.stderr.toString());
    const theirs = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown> & {
      process: { capabilities: Record<string, unknown> };
      linux: { namespaces: Array<{ type: string }>; maskedPaths: string[] };
    };
    const ours = baseConfig({ terminal: true });
    // The documented differences (see baseConfig's comment).
    theirs.ociVersion = ours.ociVersion;
    delete theirs.process.capabilities.ambient;
    delete theirs.process.capabilities.inheritable;
    if (!theirs.linux.namespaces.some((n) => n.type === 'cgroup')) theirs.linux.namespaces.push({ type: 'cgroup' });
    theirs.linux.maskedPaths = theirs.linux.maskedPaths.filter((p) => p !== '/sys/devices/virtual/tpm');
    assert.deepEqual(ours, theirs);
  });

  test('returns a fresh object each call and applies options', () => {
    const a = baseConfig({ args: ['/bin/true'], uid: 1000, gid: 1000, additionalGids: [2000], hostname: 'h' });
    a.process?.args?.push('x');
    const b = baseConfig({ args: ['/bin/true'] });
    assert.deepEqual(b.process?.args, ['/bin/true']);
    assert.deepEqual(a.process?.user, { uid: 1000, gid: 1000, additionalGids: [2000] });
    assert.equal(a.hostname, 'h');
    assert.equal(b.process?.terminal, false);
  });
});

async function waitFor(cond: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** True once /proc/PID/status shows lxr-test-init itself catching SIGTERM
 *  (SigBlk is no use: sigwaitinfo unblocks what it waits for). */
function catchesTerm(status: string): boolean {
  const name = /^Name:\s*(\S+)$/m.exec(status)?.[1];
  const cgt = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return name === 'lxr-test-init' && cgt !== undefined && ((BigInt(`0x${cgt}`) >> 14n) & 1n) === 1n;
}

/** This process's fds above 2 that a child inherits (no O_CLOEXEC), sorted. */
async function inheritableFds(): Promise<number[]> {
  const O_CLOEXEC = 0o2000000;
  const fds: number[] = [];
  for (const name of await readdir('/proc/self/fd')) {
    const fd = Number(name);
    if (fd <= 2) continue;
    let info: string;
    try {
      info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile, or the directory's own fd
    }
    const flags = /^flags:\s*([0-7]+)$/m.exec(info)?.[1];
    if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0) fds.push(fd);
  }
  return fds.sort((a, b) => a - b);
}
