// The container's process, read from inside: the five capability sets,
// no_new_privs, user and groups, cwd, env, umask, rlimits, oom_score_adj,
// sysctls, seccomp (a custom profile and LXR's default one) and the
// descriptors it inherits; bad process settings fail create cleanly.

import { strict as assert } from 'node:assert';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { defaultSeccompProfile } from '../../agent/runtime/seccomp.js';
import type { Spec } from '../../agent/runtime/oci.js';
import { runtimeFixture } from '../helpers/runtime.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { uniqueId } from '../helpers/tmp.js';
import { assertNothingLeft, capHex, rejectsWith, sh, statusFields, T } from './runtime-common.js';

const fx = await runtimeFixture();

const STATUS = 'grep -E "^(Cap|NoNewPrivs|Seccomp)" /proc/self/status';

async function status(cfg: Spec): Promise<Map<string, string>> {
  const r = await fx.run(cfg);
  assert.equal(r.exitCode, 0, r.stderr);
  return statusFields(r.stdout);
}

async function createFails(cfg: Spec) {
  const id = uniqueId('c');
  const bundle = await fx.bundle(cfg);
  return { id, promise: fx.rt.create(id, bundle) };
}

describe('capabilities', () => {
  // Sets chosen so that no two are equal, and ambient asks for one capability
  // (SYS_ADMIN) that is neither permitted nor inheritable: it must be dropped.
  const sets = {
    bounding: ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_SYS_ADMIN'],
    permitted: ['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'],
    effective: ['CAP_CHOWN', 'CAP_KILL'],
    inheritable: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'],
    ambient: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_ADMIN'],
  } as const;

  function capsConfig(uid: number): Spec {
    const cfg = sh(STATUS, { uid, gid: uid });
    cfg.process!.capabilities = Object.fromEntries(Object.entries(sets).map(([k, v]) => [k, [...v]]));
    return cfg;
  }

  test('as a non-root user: bounding and inheritable as configured, ambient = permitted & inheritable & requested', T, async () => {
    const s = await status(capsConfig(1000));
    const amb = capHex(['CAP_KILL', 'CAP_NET_BIND_SERVICE']);
    assert.equal(s.get('CapBnd'), capHex([...sets.bounding]));
    assert.equal(s.get('CapInh'), capHex([...sets.inheritable]));
    assert.equal(s.get('CapAmb'), amb);
    // execve as non-root: P'(permitted) = P'(effective) = P'(ambient) (no file capabilities).
    assert.equal(s.get('CapPrm'), amb);
    assert.equal(s.get('CapEff'), amb);
  });

  test('as root with no_new_privs: execve keeps permitted and effective to the permitted set', T, async () => {
    // Root's execve would grant bounding | inheritable; no_new_privs caps the
    // result at what was permitted before.
    const s = await status(capsConfig(0));
    assert.equal(s.get('NoNewPrivs'), '1');
    assert.equal(s.get('CapBnd'), capHex([...sets.bounding]));
    assert.equal(s.get('CapInh'), capHex([...sets.inheritable]));
    assert.equal(s.get('CapAmb'), capHex(['CAP_KILL', 'CAP_NET_BIND_SERVICE']));
    assert.equal(s.get('CapPrm'), capHex([...sets.permitted]));
    assert.equal(s.get('CapEff'), capHex([...sets.permitted]));
  });

  test('as root without no_new_privs: execve grants bounding | inheritable', T, async () => {
    const cfg = capsConfig(0);
    cfg.process!.noNewPrivileges = false;
    const s = await status(cfg);
    assert.equal(s.get('NoNewPrivs'), '0');
    assert.equal(s.get('CapBnd'), capHex([...sets.bounding]));
    assert.equal(s.get('CapInh'), capHex([...sets.inheritable]));
    assert.equal(s.get('CapAmb'), capHex(['CAP_KILL', 'CAP_NET_BIND_SERVICE']));
    assert.equal(s.get('CapPrm'), capHex([...sets.bounding]));
    assert.equal(s.get('CapEff'), capHex([...sets.bounding]));
  });

  test('runc\'s default set, and no capabilities at all', T, async () => {
    const d = await status(sh(STATUS));
    const runc = capHex(['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE']);
    for (const k of ['CapBnd', 'CapPrm', 'CapEff']) assert.equal(d.get(k), runc, k);
    assert.equal(d.get('CapInh'), '0000000000000000');
    assert.equal(d.get('CapAmb'), '0000000000000000');
    const cfg = sh(STATUS);
    cfg.process!.capabilities = { bounding: [], effective: [], permitted: [], inheritable: [], ambient: [] };
    const none = await status(cfg);
    for (const k of ['CapBnd', 'CapPrm', 'CapEff', 'CapInh', 'CapAmb']) assert.equal(none.get(k), '0000000000000000', k);
  });

  test('a capability the kernel lacks the name of is an invalid spec naming the field', T, async () => {
    const cfg = sh('true');
    cfg.process!.capabilities!.bounding = ['CAP_KILL', 'CAP_MAKE_COFFEE'];
    const { id, promise } = await createFails(cfg);
    const e = await rejectsWith(promise, 'LXR_INVALID_SPEC', /CAP_MAKE_COFFEE/);
    assert.equal(e.field, 'process.capabilities.bounding[1]');
    await assertNothingLeft(fx, id);
  });
});

describe('no_new_privs', () => {
  for (const nnp of [true, false]) {
    test(`noNewPrivileges ${nnp} shows as NoNewPrivs ${nnp ? 1 : 0}`, T, async () => {
      const cfg = sh(STATUS);
      cfg.process!.noNewPrivileges = nnp;
      assert.equal((await status(cfg)).get('NoNewPrivs'), nnp ? '1' : '0');
    });
  }
});

describe('user, groups, cwd, env, umask', () => {
  test('uid, gid and additional gids', T, async () => {
    const r = await fx.run(baseConfig({ args: ['/sbin/lxr-test-init', '--probe', 'ids'], uid: 1000, gid: 1000, additionalGids: [2000, 65534] }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'uid=1000 gid=1000 groups=2000,65534');
    const id = await fx.run(baseConfig({ args: ['id'], uid: 1000, gid: 1000, additionalGids: [2000] }));
    assert.equal(id.stdout.trim(), 'uid=1000(lxr) gid=1000(lxr) groups=2000(extra)');
  });

  test('without additionalGids the process has no supplementary groups (not the host\'s)', T, async () => {
    const r = await fx.run(baseConfig({ args: ['/sbin/lxr-test-init', '--probe', 'ids'], uid: 65534, gid: 65534 }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'uid=65534 gid=65534 groups=');
  });

  test('cwd', T, async () => {
    const r = await fx.run(baseConfig({ args: ['pwd'], cwd: '/home/lxr' }));
    assert.equal(r.stdout, '/home/lxr\n');
  });

  test('a cwd that does not exist fails create, naming it, and leaves nothing', T, async () => {
    const { id, promise } = await createFails(baseConfig({ args: ['true'], cwd: '/no/such/dir' }));
    const e = await rejectsWith(promise, 'LXR_INVALID_SPEC', /\/no\/such\/dir/, /cwd/);
    assert.equal(e.field, 'process.cwd');
    assert.equal(e.errno, 'ENOENT');
    await assertNothingLeft(fx, id);
  });

  test('a relative cwd is an invalid spec', T, async () => {
    const { id, promise } = await createFails(baseConfig({ args: ['true'], cwd: 'home' }));
    const e = await rejectsWith(promise, 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'process.cwd');
    await assertNothingLeft(fx, id);
  });

  test('env is exactly the configured environment, plus HOME from /etc/passwd when unset', T, async () => {
    const env = ['PATH=/bin:/sbin', 'GREETING=hello world', 'EMPTY=', 'MULTI=a=b=c'];
    const r = await fx.run(baseConfig({ args: ['env'], env }));
    assert.equal(r.exitCode, 0, r.stderr);
    // As runc: a process without HOME gets its user's home directory.
    assert.deepEqual(r.stdout.trim().split('\n').sort(), [...env, 'HOME=/root'].sort());
    const lxr = await fx.run(baseConfig({ args: ['env'], env, uid: 1000, gid: 1000 }));
    assert.deepEqual(lxr.stdout.trim().split('\n').sort(), [...env, 'HOME=/home/lxr'].sort());
    const own = await fx.run(baseConfig({ args: ['env'], env: [...env, 'HOME=/elsewhere'] }));
    assert.deepEqual(own.stdout.trim().split('\n').sort(), [...env, 'HOME=/elsewhere'].sort());
  });

  test('an env entry without "=" is an invalid spec naming the entry', T, async () => {
    const { id, promise } = await createFails(baseConfig({ args: ['true'], env: ['PATH=/bin', 'JUSTANAME'] }));
    const e = await rejectsWith(promise, 'LXR_INVALID_SPEC', /JUSTANAME/);
    assert.equal(e.field, 'process.env[1]');
    await assertNothingLeft(fx, id);
  });

  test('umask', T, async () => {
    const cfg = sh('umask; touch /tmp/f; stat -c %a /tmp/f', { readonly: false });
    cfg.process!.user.umask = 0o027;
    const r = await fx.run(cfg);
    assert.deepEqual(r.stdout.trim().split('\n'), ['0027', '640']);
  });
});

describe('rlimits and oom_score_adj', () => {
  test('rlimits are set soft and hard', T, async () => {
    const cfg = sh('ulimit -n; ulimit -Hn; grep -E "Max (open files|core file size)" /proc/self/limits');
    cfg.process!.rlimits = [
      { type: 'RLIMIT_NOFILE', soft: 256, hard: 512 },
      { type: 'RLIMIT_CORE', soft: 0, hard: 4096 },
    ];
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], '256');
    assert.equal(lines[1], '512');
    assert.match(r.stdout, /Max core file size\s+0\s+4096\s+bytes/);
    assert.match(r.stdout, /Max open files\s+256\s+512\s+files/);
  });

  test('an unknown rlimit is an invalid spec', T, async () => {
    const cfg = sh('true');
    cfg.process!.rlimits = [{ type: 'RLIMIT_COFFEE', soft: 1, hard: 1 }];
    const { id, promise } = await createFails(cfg);
    await rejectsWith(promise, 'LXR_INVALID_SPEC', /RLIMIT_COFFEE/);
    await assertNothingLeft(fx, id);
  });

  test('a soft limit above the hard limit fails create and leaves nothing', T, async () => {
    const cfg = sh('true');
    cfg.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 512, hard: 256 }];
    const { id, promise } = await createFails(cfg);
    let err: unknown;
    await promise.catch((e: unknown) => (err = e));
    assert.ok(err instanceof Error, 'create succeeded');
    assert.match((err as Error).message, /rlimit|RLIMIT_NOFILE|soft/i);
    await assertNothingLeft(fx, id);
  });

  test('oomScoreAdj', T, async () => {
    for (const v of [500, 1000]) {
      const cfg = sh('cat /proc/self/oom_score_adj');
      cfg.process!.oomScoreAdj = v;
      const r = await fx.run(cfg);
      assert.equal(r.stdout.trim(), String(v));
    }
  });

  test('a negative oomScoreAdj works with CAP_SYS_RESOURCE and fails cleanly without it', T, async () => {
    const eff = BigInt('0x' + statusFields(await readFile('/proc/self/status', 'utf8')).get('CapEff')!);
    const canLower = (eff >> 24n) & 1n; // CAP_SYS_RESOURCE: the runtime's, not the container's
    const cfg = sh('cat /proc/self/oom_score_adj');
    cfg.process!.oomScoreAdj = -200;
    if (canLower) {
      assert.equal((await fx.run(cfg)).stdout.trim(), '-200');
      return;
    }
    const { id, promise } = await createFails(cfg);
    await rejectsWith(promise, 'LXR_PERMISSION_DENIED', /oom_score_adj/);
    await assertNothingLeft(fx, id);
  });

  test('an oomScoreAdj out of range is an invalid spec', T, async () => {
    const cfg = sh('true');
    cfg.process!.oomScoreAdj = 1001;
    const { id, promise } = await createFails(cfg);
    const e = await rejectsWith(promise, 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'process.oomScoreAdj');
    await assertNothingLeft(fx, id);
  });
});

describe('sysctl', () => {
  test('namespaced sysctls are set inside the container only', T, async () => {
    const hostForward = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
    const hostMsgmax = (await readFile('/proc/sys/kernel/msgmax', 'utf8')).trim();
    const want = hostForward === '1' ? '0' : '1';
    const cfg = sh('cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax');
    cfg.linux!.sysctl = { 'net.ipv4.ip_forward': want, 'kernel.msgmax': '12345' };
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [want, '12345']);
    assert.equal((await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim(), hostForward);
    assert.equal((await readFile('/proc/sys/kernel/msgmax', 'utf8')).trim(), hostMsgmax);
  });

  test('a sysctl of a namespace the container shares with the host is refused', T, async () => {
    // The value is the host's own: even if the check were missing, nothing would change.
    const hostForward = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
    const cfg = sh('true');
    cfg.linux!.namespaces = cfg.linux!.namespaces!.filter((n) => n.type !== 'network');
    cfg.linux!.sysctl = { 'net.ipv4.ip_forward': hostForward };
    const { id, promise } = await createFails(cfg);
    const e = await rejectsWith(promise, 'LXR_INVALID_SPEC', /network namespace/);
    assert.equal(e.field, 'linux.sysctl.net.ipv4.ip_forward');
    await assertNothingLeft(fx, id);
  });

  test('a host-wide sysctl is refused', T, async () => {
    const hostValue = (await readFile('/proc/sys/vm/swappiness', 'utf8')).trim();
    const cfg = sh('true');
    cfg.linux!.sysctl = { 'vm.swappiness': hostValue };
    const { id, promise } = await createFails(cfg);
    const e = await rejectsWith(promise, 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'linux.sysctl.vm.swappiness');
    await assertNothingLeft(fx, id);
  });

  test('a sysctl name with a path in it is refused', T, async () => {
    const cfg = sh('true');
    cfg.linux!.sysctl = { 'net/../../kernel/x': '1' };
    const { id, promise } = await createFails(cfg);
    await rejectsWith(promise, 'LXR_INVALID_SPEC');
    await assertNothingLeft(fx, id);
  });

  test('a sysctl the kernel does not have fails create and leaves nothing', T, async () => {
    const cfg = sh('true');
    cfg.linux!.sysctl = { 'net.ipv4.no_such_knob': '1' };
    const { id, promise } = await createFails(cfg);
    await rejectsWith(promise, 'LXR_INVALID_SPEC', /no_such_knob/);
    await assertNothingLeft(fx, id);
  });
});

describe('seccomp', () => {
  test('a custom profile makes mkdir fail with EPERM; without it mkdir works', T, async () => {
    const script = 'mkdir /tmp/d && echo made; grep "^Seccomp:" /proc/self/status';
    const cfg = sh(script, { readonly: false });
    cfg.linux!.seccomp = {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }],
    };
    const r = await fx.run(cfg);
    assert.match(r.stderr, /Operation not permitted/);
    assert.ok(!r.stdout.includes('made'));
    assert.match(r.stdout, /^Seccomp:\s+2$/m);
    const plain = await fx.run(sh(script, { readonly: false }));
    assert.match(plain.stdout, /^made$/m);
    assert.match(plain.stdout, /^Seccomp:\s+0$/m);
  });

  test('errnoRet chooses the errno', T, async () => {
    const cfg = sh('mkdir /tmp/d', { readonly: false });
    cfg.linux!.seccomp = {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 28 }],
    };
    const r = await fx.run(cfg);
    assert.match(r.stderr, /No space left on device/);
  });

  test('the filter applies without no_new_privs too (loaded while the helper can)', T, async () => {
    const cfg = sh(`mkdir /tmp/d; ${STATUS}`, { readonly: false });
    cfg.process!.noNewPrivileges = false;
    cfg.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] };
    const r = await fx.run(cfg);
    assert.match(r.stderr, /Operation not permitted/);
    const s = statusFields(r.stdout);
    assert.equal(s.get('Seccomp'), '2');
    assert.equal(s.get('NoNewPrivs'), '0');
  });

  test('LXR\'s default profile blocks mount and unshare even with CAP_SYS_ADMIN', T, async () => {
    // Both calls are harmless if they went through: the mount lands in the
    // container's mount namespace, the unshare makes a throwaway namespace.
    const script = 'mount -t tmpfs none /tmp && echo mounted; unshare -m true && echo unshared; true';
    const withAdmin = (cfg: Spec): Spec => {
      for (const set of ['bounding', 'effective', 'permitted'] as const) cfg.process!.capabilities![set]!.push('CAP_SYS_ADMIN');
      return cfg;
    };
    const plain = await fx.run(withAdmin(sh(script)));
    assert.match(plain.stdout, /mounted\nunshared/, `control run: ${plain.stderr}`);
    const cfg = withAdmin(sh(script));
    cfg.linux!.seccomp = defaultSeccompProfile();
    const r = await fx.run(cfg);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /Operation not permitted/);
  });

  test('an unknown seccomp action is an invalid spec', T, async () => {
    const cfg = sh('true');
    cfg.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_MAYBE' }] };
    const { id, promise } = await createFails(cfg);
    const e = await rejectsWith(promise, 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'linux.seccomp.syscalls[0].action');
    await assertNothingLeft(fx, id);
  });

  test('a syscall name this kernel does not know is skipped', T, async () => {
    const cfg = sh('echo ran');
    cfg.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['no_such_syscall_lxr'], action: 'SCMP_ACT_ERRNO' }] };
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'ran\n');
  });
});

describe('inherited descriptors', () => {
  test('the process has exactly 0, 1 and 2 open', T, async () => {
    const r = await fx.run(baseConfig({ args: ['/sbin/lxr-test-init', '--probe', 'fds'] }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0 1 2');
  });
});
