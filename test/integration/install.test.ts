// README command 1 the way CI meets it: a fresh clone of this repository,
// `bash scripts/install.sh` in it (Debian packages, npm ci, native build,
// TypeScript, the lxrctl bundle, commands linked, then the demo: a lab with
// a controller, a busybox image built offline and imported, a workspace
// `demo` and a command run in it), then the cluster it left used through the
// clone's own lxrctl, and the script run a second time. Also: .ci/run runs
// exactly the README's two commands.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { alive, labDown, readLab } from '../../cli/lab/lab.js';
import { repoRoot } from '../../proto/shared/api.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const root = repoRoot();
const skip = process.getuid?.() !== 0 ? 'needs root (install.sh installs packages and makes a lab)' : !existsSync(path.join(root, '.git')) ? 'not a git checkout: nothing to clone' : false;

/** The commands of README's "The two commands" block, comments and blank lines dropped. */
function readmeCommands(): string[] {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## The two commands'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  return block
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

describe('README command 1 in a fresh clone', { skip, timeout: 1_500_000 }, () => {
  let work: string;
  let clone: string;
  let env: NodeJS.ProcessEnv;
  const name = uniqueId('inst').toLowerCase();

  /** Runs install.sh in the clone; exit code and output together (never throws). */
  const install = (): Promise<{ code: number; out: string }> =>
    new Promise((resolve) => {
      const p = spawn('bash', ['scripts/install.sh'], { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      const t = setTimeout(() => p.kill('SIGKILL'), 1_200_000);
      p.on('close', (code) => {
        clearTimeout(t);
        resolve({ code: code ?? 137, out });
      });
    });

  before(async () => {
    work = await ownedTempDir('install');
    clone = path.join(work, 'clone');
    await run('git', ['clone', '--quiet', '--no-hardlinks', root, clone]);
    env = {
      ...process.env,
      LXR_BIN_DIR: path.join(work, 'bin'),
      LXR_DEMO_NAME: name,
      LXR_DEMO_DIR: path.join(work, 'lab'),
      LXR_CONFIG: path.join(work, 'config.json'),
    };
    delete env['LXR_SKIP_DEMO'];
    delete env['LXR_SERVER'];
    delete env['LXR_CONTEXT'];
  });

  after(async () => {
    if (work) {
      if (existsSync(path.join(work, 'lab'))) assert.deepEqual(await labDown(path.join(work, 'lab')), []);
      await run('rm', ['-rf', work]);
    }
  });

  test('.ci/run runs exactly the README\'s two commands', () => {
    assert.deepEqual(readmeCommands(), ['bash scripts/install.sh', 'npm test']);
    const ci = readFileSync(path.join(root, '.ci', 'run'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#') && !/^(set |cd )/.test(l));
    assert.deepEqual(ci, ['bash scripts/install.sh', 'npm test']);
  });

  test('install.sh builds, links the commands, and leaves a cluster with a workspace that answers', async () => {
    const r = await install();
    assert.equal(r.code, 0, r.out.slice(-4000));
    assert.match(r.out, new RegExp(`installed: lxr-runtime lxr-agent lxr-controller lxrctl -> ${path.join(work, 'bin')}`));
    assert.match(r.out, new RegExp(`lab ${name} is up: 2 hosts`));
    assert.match(r.out, /^n1: imported docker\.io\/library\/busybox:latest/m);
    assert.match(r.out, /^n2: imported docker\.io\/library\/busybox:latest/m);
    assert.match(r.out, /^demo is running on host n\d, address 198\.19\.\d+\.\d+$/m);
    assert.match(r.out, /^hello from workspace demo: pid \d+, uid=0\(root\)/m);
    assert.match(r.out, /NoNewPrivs: 1 Seccomp: 2/);
    assert.match(r.out, /^Next, try:\n {2}lxrctl exec -it demo -- sh/m);
    for (const cmd of ['lxr-runtime', 'lxr-agent', 'lxr-controller', 'lxrctl']) {
      assert.equal(readlinkSync(path.join(work, 'bin', cmd)), path.join(clone, 'bin', cmd));
    }
    // The cluster is there for the user: through the clone's lxrctl and the context the demo made current.
    const lxrctl = path.join(work, 'bin', 'lxrctl');
    const ps = (await run(lxrctl, ['ps'], { env })).stdout;
    assert.match(ps, /^demo\s+n\d\s+198\.19\.\d+\.\d+\s+Running\s+busybox\s/m);
    assert.equal((await run(lxrctl, ['exec', 'demo', '--', 'echo', 'still', 'here'], { env })).stdout, 'still here\n');
    assert.match((await run(lxrctl, ['config', 'current-context'], { env })).stdout, new RegExp(`^lab-${name}$`, 'm'));
  });

  test('running it again reuses what is there', async () => {
    const r = await install();
    assert.equal(r.code, 0, r.out.slice(-4000));
    assert.match(r.out, new RegExp(`lab ${name} is already up; using it`));
    assert.match(r.out, /^demo \(already there\) is running/m);
    assert.match(r.out, /^hello from workspace demo/m);
  });

  test('after its lab died (as after a reboot), the demo makes the lab again', async () => {
    const lab = readLab(path.join(work, 'lab'))!;
    process.kill(lab.controller!.proc.pid, 'SIGKILL');
    for (let i = 0; i < 100 && alive(lab.controller!.proc); i++) await new Promise((res) => setTimeout(res, 50));
    const st = await run(path.join(work, 'bin', 'lxrctl'), ['lab', 'status', '--name', name, '--dir', path.join(work, 'lab')], { env }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(st?.code, 3, 'lab status says it is not all up');
    assert.match(st!.stderr, /its controller DOWN/);
    const out = await new Promise<{ code: number; out: string }>((resolve) => {
      const p = spawn('bash', ['scripts/demo.sh'], { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let o = '';
      p.stdout.on('data', (d) => (o += d));
      p.stderr.on('data', (d) => (o += d));
      p.on('close', (code) => resolve({ code: code ?? 137, out: o }));
    });
    assert.equal(out.code, 0, out.out.slice(-4000));
    assert.match(out.out, new RegExp(`lab ${name} is not all up; making it again`));
    assert.match(out.out, new RegExp(`lab ${name} is up: 2 hosts`));
    assert.match(out.out, /^hello from workspace demo/m);
  });
});
