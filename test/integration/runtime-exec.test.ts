// Exec into a running container, observed from the exec'd process: the
// container's namespaces and cgroups, its capabilities, no_new_privs and
// seccomp filter, the requested user, cwd and env; exit codes, detach,
// descriptors, the helper staying invisible; and bad exec requests.

import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chmod, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runtimeFixture } from '../helpers/runtime.js';
import { uniqueId } from '../helpers/tmp.js';
import { execCapture, execProcess, rejectsWith, sh, startContainer, statusFields, T, until, type Started } from './runtime-common.js';

const execFileP = promisify(execFile);
const fx = await runtimeFixture();

const NS = ['pid', 'net', 'ipc', 'uts', 'mnt', 'cgroup'];
const SELF = `cat /proc/self/cgroup; grep -E "^(Cap|NoNewPrivs|Seccomp:)" /proc/self/status`;

describe('exec into a running container', () => {
  let c: Started;
  let initView: string;

  before(async () => {
    const cfg = sh(`${SELF}; echo ready; exec sleep 60`, { readonly: false });
    // Something to tell the container's filter apart from none at all.
    cfg.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] };
    cfg.process!.env!.push('FROM_SPEC=1');
    c = await startContainer(fx, cfg);
    await until('the init to describe itself', async () => (await c.output()).stdout.includes('ready'));
    initView = (await c.output()).stdout.replace('ready\n', '');
  });
  after(async () => {
    if (c) await fx.rt.delete(c.id, { force: true });
  });

  test('the exec\'d process is in every namespace of the container', T, async () => {
    const r = await execCapture(fx, c.id, execProcess(['sh', '-c', NS.map((n) => `readlink /proc/self/ns/${n}`).join('; ')]));
    assert.equal(r.code, 0, r.stderr);
    const expected = await Promise.all(NS.map((n) => readlink(`/proc/${c.pid}/ns/${n}`)));
    assert.deepEqual(r.stdout.trim().split('\n'), expected);
  });

  test('same cgroups, capabilities, no_new_privs and seccomp as the init', T, async () => {
    const r = await execCapture(fx, c.id, execProcess(['sh', '-c', SELF]));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, initView);
    assert.equal(statusFields(r.stdout).get('Seccomp'), '2');
    assert.equal(statusFields(r.stdout).get('NoNewPrivs'), '1');
    // Seen from the host, the exec'd process joined the container's cgroup in every hierarchy.
    const d = await execCapture(fx, c.id, execProcess(['mkdir', '/tmp/x']));
    assert.notEqual(d.code, 0);
    assert.match(d.stderr, /Operation not permitted/);
  });

  test('a detached exec returns its pid; the process lives in the container', T, async () => {
    const h = await fx.rt.exec(c.id, execProcess(['sleep', '30']), { detach: true });
    assert.ok(h.pid > 0);
    assert.equal(await h.exited, null);
    assert.equal(await readlink(`/proc/${h.pid}/ns/pid`), await readlink(`/proc/${c.pid}/ns/pid`));
    assert.equal(await readFile(`/proc/${h.pid}/cgroup`, 'utf8'), await readFile(`/proc/${c.pid}/cgroup`, 'utf8'));
    process.kill(h.pid, 'SIGKILL');
    await until('the detached process to go', async () => {
      const stat = await readFile(`/proc/${h.pid}/stat`, 'utf8').catch(() => '');
      return stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
    });
  });

  test('exit codes propagate, including death by a signal', T, async () => {
    assert.equal((await execCapture(fx, c.id, execProcess(['sh', '-c', 'exit 42']))).code, 42);
    assert.equal((await execCapture(fx, c.id, execProcess(['true']))).code, 0);
    assert.equal((await execCapture(fx, c.id, execProcess(['sh', '-c', 'kill -9 $$']))).code, 137);
  });

  test('user, cwd and env are the exec request\'s', T, async () => {
    const r = await execCapture(
      fx,
      c.id,
      execProcess(['sh', '-c', 'id; pwd; echo "$GREETING"; echo "${FROM_SPEC:-unset}"'], {
        user: { uid: 1000, gid: 1000, additionalGids: [2000] },
        cwd: '/home/lxr',
        env: ['PATH=/bin', 'GREETING=hi there'],
      }),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['uid=1000(lxr) gid=1000(lxr) groups=2000(extra)', '/home/lxr', 'hi there', 'unset']);
  });

  test('only descriptors 0, 1 and 2 are open', T, async () => {
    const r = await execCapture(fx, c.id, execProcess(['/sbin/lxr-test-init', '--probe', 'fds']));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0 1 2');
  });

  test('the helper that joined the container is invisible from inside it', T, async () => {
    // Its parent lives outside the container's pid namespace: pid 0 inside.
    const r = await execCapture(fx, c.id, execProcess(['sh', '-c', 'echo $PPID; grep PPid /proc/$$/status; cat /proc/[0-9]*/comm']));
    assert.equal(r.code, 0, r.stderr);
    const [ppid, status, ...comms] = r.stdout.trim().split('\n');
    assert.equal(ppid, '0');
    assert.match(status!, /^PPid:\s+0$/);
    // The init, this shell (now cat: the last command replaces it), and what
    // earlier tests left: never the helper.
    assert.ok(comms.includes('sleep') && comms.includes('cat'), comms.join(' '));
    assert.ok(!comms.some((c) => c.startsWith('lxr')), `the container sees ${comms.join(' ')}`);
  });

  test('several execs at once each get their own output', T, async () => {
    const rs = await Promise.all([1, 2, 3].map((i) => execCapture(fx, c.id, execProcess(['sh', '-c', `echo exec-${i}`]))));
    assert.deepEqual(rs.map((r) => r.stdout), ['exec-1\n', 'exec-2\n', 'exec-3\n']);
  });

  test('a missing binary is EXEC_NOT_FOUND (127) and the container keeps running', T, async () => {
    const e = await rejectsWith(fx.rt.exec(c.id, execProcess(['no-such-tool'])), 'LXR_EXEC_NOT_FOUND', /no-such-tool/);
    assert.equal((e as unknown as { exitCode: number }).exitCode, 127);
    assert.equal((await fx.rt.state(c.id)).status, 'running');
  });

  test('a cwd that does not exist fails, naming it', T, async () => {
    await rejectsWith(fx.rt.exec(c.id, execProcess(['true'], { cwd: '/nowhere/at/all' })), 'LXR_INVALID_SPEC', /\/nowhere\/at\/all/);
  });

  test('an invalid process is an invalid spec naming the field', T, async () => {
    const e = await rejectsWith(fx.rt.exec(c.id, execProcess([])), 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'process.args');
    const t = await rejectsWith(fx.rt.exec(c.id, execProcess(['true'], { terminal: true })), 'LXR_INVALID_SPEC', /console/);
    assert.equal(t.field, 'process.terminal');
    assert.equal((await fx.rt.state(c.id)).status, 'running');
  });
});

describe('exec into a container with a user namespace', () => {
  test('joins the user namespace: root inside, the mapped id outside', T, async () => {
    const cfg = sh('sleep 60');
    cfg.linux!.namespaces!.push({ type: 'user' });
    cfg.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    cfg.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    const bundle = await fx.bundle(cfg);
    await chmod(path.dirname(bundle), 0o711);
    await chmod(bundle, 0o711);
    await execFileP('chown', ['-R', '-h', '100000:100000', path.join(bundle, 'rootfs')]);
    const id = uniqueId('c');
    const st = await fx.rt.create(id, bundle);
    try {
      await fx.rt.start(id);
      const h = await fx.rt.exec(id, execProcess(['sleep', '30']), { detach: true });
      const status = statusFields(await readFile(`/proc/${h.pid}/status`, 'utf8'));
      assert.equal(status.get('Uid')!.split(/\s+/)[0], '100000');
      assert.equal(await readlink(`/proc/${h.pid}/ns/user`), await readlink(`/proc/${st.pid}/ns/user`));
      const r = await execCapture(fx, id, execProcess(['sh', '-c', 'id -u; cat /proc/self/uid_map']));
      assert.equal(r.code, 0, r.stderr);
      const [uid, map] = r.stdout.trim().split('\n');
      assert.equal(uid, '0');
      assert.deepEqual(map!.trim().split(/\s+/), ['0', '100000', '65536']);
    } finally {
      await fx.rt.delete(id, { force: true });
    }
  });
});
