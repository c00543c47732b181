// The planner: OCI spec -> native launch plan records, checked without root.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { MS, parseMountOptions } from '../../agent/runtime/mount-options.js';
import type { Spec } from '../../agent/runtime/oci.js';
import { decodePlan, encodePlan, planCreate, planExec, type CgroupPlacement, type PlanRecord } from '../../agent/runtime/plan.js';

function spec(over: Partial<Spec> = {}, linux: Spec['linux'] = {}): Spec {
  return {
    ociVersion: '1.0.2',
    root: { path: 'rootfs' },
    process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/', env: ['PATH=/bin'] },
    ...over,
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }], ...linux },
  };
}

const base = { id: 'c1', rootfs: '/b/rootfs', cgroup: null, stdio: { mode: 'inherit' } as const, controlSocket: '/s/ctl.sock', exitFile: '/s/exit.json' };
const ops = (recs: PlanRecord[], op: string) => recs.filter((r) => r[0] === op);

describe('mount options', () => {
  const cases: Array<[string[], number, number, string]> = [
    [['nosuid', 'noexec', 'nodev'], MS.NOSUID | MS.NOEXEC | MS.NODEV, 0, ''],
    [['ro', 'rw'], 0, 0, ''],
    [['rbind', 'ro'], MS.BIND | MS.REC | MS.RDONLY, 0, ''],
    [['nosuid', 'mode=755', 'size=65536k'], MS.NOSUID, 0, 'mode=755,size=65536k'],
    [['rslave'], 0, MS.SLAVE | MS.REC, ''],
    [['private', 'strictatime'], MS.STRICTATIME, MS.PRIVATE, ''],
    [[], 0, 0, ''],
  ];
  for (const [opts, flags, prop, data] of cases) {
    it(JSON.stringify(opts), () => assert.deepEqual(parseMountOptions(opts), { flags, propagation: prop, data }));
  }
});

describe('planCreate', () => {
  it('new namespaces become ns records with empty paths; joined ones keep theirs', () => {
    const recs = planCreate({ ...base, spec: spec({}, { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: '/run/netns/x' }] }) });
    assert.deepEqual(ops(recs, 'ns'), [['ns', 'pid', ''], ['ns', 'mount', ''], ['ns', 'net', '/run/netns/x']]);
  });

  it('refuses a spec without a new mount namespace, naming the field', () => {
    for (const namespaces of [[{ type: 'pid' as const }], [{ type: 'mount' as const, path: '/proc/1/ns/mnt' }]]) {
      assert.throws(() => planCreate({ ...base, spec: spec({}, { namespaces }) }), (e: LxrError) => e.reason === 'LXR_INVALID_SPEC' && e.field === 'linux.namespaces');
    }
  });

  it('a hostname needs a uts namespace', () => {
    assert.throws(() => planCreate({ ...base, spec: spec({ hostname: 'h' }) }), (e: LxrError) => e.field === 'hostname');
    const recs = planCreate({ ...base, spec: spec({ hostname: 'h' }, { namespaces: [{ type: 'mount' }, { type: 'uts' }] }) });
    assert.deepEqual(ops(recs, 'hostname'), [['hostname', 'h']]);
  });

  it('a terminal needs a console socket', () => {
    const s = spec();
    s.process!.terminal = true;
    assert.throws(() => planCreate({ ...base, spec: s }), (e: LxrError) => e.field === 'process.terminal');
    const recs = planCreate({ ...base, spec: s, consoleSocket: '/tmp/c.sock' });
    assert.deepEqual(ops(recs, 'console_socket'), [['console_socket', '/tmp/c.sock']]);
    assert.deepEqual(ops(recs, 'terminal'), [['terminal', '0', '0']]);
  });

  it('mounts keep their order, binds carry MS_BIND, data passes through', () => {
    const recs = planCreate({
      ...base,
      spec: spec({
        mounts: [
          { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid'] },
          { destination: '/data', type: 'bind', source: '/host/data', options: ['rbind', 'ro'] },
          { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'rslave'] },
        ],
      }),
    });
    assert.deepEqual(ops(recs, 'mount'), [
      ['mount', 'proc', '/proc', 'proc', String(MS.NOSUID), '0', ''],
      ['mount', '/host/data', '/data', '', String(MS.BIND | MS.REC | MS.RDONLY), '0', ''],
      ['mount', 'tmpfs', '/tmp', 'tmpfs', '0', String(MS.SLAVE | MS.REC), 'size=1m'],
    ]);
  });

  it('a bind mount without a source is refused naming it', () => {
    assert.throws(
      () => planCreate({ ...base, spec: spec({ mounts: [{ destination: '/x', type: 'bind', options: ['rbind'] }] }) }),
      (e: LxrError) => e.field === 'mounts[0].source',
    );
  });

  const v1: CgroupPlacement = {
    procsFiles: ['/sys/fs/cgroup/memory/t/c1/cgroup.procs', '/sys/fs/cgroup/pids/t/c1/cgroup.procs'],
    mountSources: [
      { hostDir: '/sys/fs/cgroup/memory/t/c1', subdir: 'memory', fsType: 'cgroup', data: 'memory' },
      { hostDir: '/sys/fs/cgroup/pids/t/c1', subdir: 'pids', fsType: 'cgroup', data: 'pids' },
      { hostDir: '/sys/fs/cgroup/systemd/t/c1', subdir: 'systemd', fsType: 'cgroup', data: 'none,name=systemd' },
    ],
    oomCounter: { file: '/sys/fs/cgroup/memory/t/c1/memory.oom_control', key: 'oom_kill' },
  };
  const cgMount = { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'ro'] };

  it('v1/hybrid cgroup mount: a tmpfs with one bind per hierarchy, read-only last', () => {
    const recs = planCreate({ ...base, cgroup: v1, spec: spec({ mounts: [cgMount] }) });
    const base3 = MS.NOSUID | MS.NOEXEC | MS.NODEV;
    assert.deepEqual(
      recs.filter((r) => r[0] === 'mount' || r[0] === 'remount'),
      [
        ['mount', 'tmpfs', '/sys/fs/cgroup', 'tmpfs', String(base3), '0', 'mode=755'],
        ['mount', '/sys/fs/cgroup/memory/t/c1', '/sys/fs/cgroup/memory', '', String(base3 | MS.RDONLY | MS.BIND), '0', ''],
        ['mount', '/sys/fs/cgroup/pids/t/c1', '/sys/fs/cgroup/pids', '', String(base3 | MS.RDONLY | MS.BIND), '0', ''],
        ['mount', '/sys/fs/cgroup/systemd/t/c1', '/sys/fs/cgroup/systemd', '', String(base3 | MS.RDONLY | MS.BIND), '0', ''],
        ['remount', '/sys/fs/cgroup', String(base3 | MS.RDONLY), ''],
      ],
    );
    assert.deepEqual(ops(recs, 'cgroup'), v1.procsFiles.map((f) => ['cgroup', f]));
    assert.deepEqual(ops(recs, 'oom_counter'), [['oom_counter', v1.oomCounter!.file, 'oom_kill']]);
  });

  it('v1/hybrid in a cgroup namespace of its own: each hierarchy mounted afresh with its flags, as runc does', () => {
    const recs = planCreate({ ...base, cgroup: v1, spec: spec({ mounts: [cgMount] }, { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'cgroup' }] }) });
    const base3 = MS.NOSUID | MS.NOEXEC | MS.NODEV;
    assert.deepEqual(
      recs.filter((r) => r[0] === 'mount' || r[0] === 'remount'),
      [
        ['mount', 'tmpfs', '/sys/fs/cgroup', 'tmpfs', String(base3), '0', 'mode=755'],
        ['mount', 'cgroup', '/sys/fs/cgroup/memory', 'cgroup', String(base3 | MS.RDONLY), '0', 'memory'],
        ['mount', 'cgroup', '/sys/fs/cgroup/pids', 'cgroup', String(base3 | MS.RDONLY), '0', 'pids'],
        ['mount', 'cgroup', '/sys/fs/cgroup/systemd', 'cgroup', String(base3 | MS.RDONLY), '0', 'none,name=systemd'],
        ['remount', '/sys/fs/cgroup', String(base3 | MS.RDONLY), ''],
      ],
    );
    // A bind or remount in the spec's options never reaches a fresh mount (its source "cgroup" would be a host path).
    const odd = planCreate({ ...base, cgroup: v1, spec: spec({ mounts: [{ ...cgMount, options: [...cgMount.options, 'rbind', 'remount', 'noatime'] }] }, { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'cgroup' }] }) });
    const oddMounts = odd.filter((x) => x[0] === 'mount' && x[3] === 'cgroup');
    assert.equal(oddMounts.length, 3);
    for (const r of oddMounts) {
      assert.equal(Number(r[4]) & (MS.BIND | MS.REMOUNT | MS.REC), 0, r.join(' '));
      assert.equal(Number(r[4]), base3 | MS.RDONLY | MS.NOATIME);
    }
    // Joined by path: the namespace is someone else's, and its root is not this container's cgroup.
    const joined = planCreate({ ...base, cgroup: v1, spec: spec({ mounts: [cgMount] }, { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'cgroup', path: '/proc/7/ns/cgroup' }] }) });
    assert.equal(joined.filter((r) => r[0] === 'mount' && r[3] === 'cgroup').length, 0);
  });

  const v2: CgroupPlacement = { procsFiles: ['/sys/fs/cgroup/t/c1/cgroup.procs'], mountSources: [{ hostDir: '/sys/fs/cgroup/t/c1', subdir: '', fsType: 'cgroup2', data: '' }], oomCounter: null };

  it('v2 cgroup mount: one bind of the container cgroup', () => {
    const recs = planCreate({ ...base, cgroup: v2, spec: spec({ mounts: [cgMount] }) });
    assert.deepEqual(ops(recs, 'mount'), [['mount', '/sys/fs/cgroup/t/c1', '/sys/fs/cgroup', '', String(MS.NOSUID | MS.NOEXEC | MS.NODEV | MS.RDONLY | MS.BIND), '0', '']]);
  });

  it('v2 in a cgroup namespace of its own: one fresh cgroup2 mount', () => {
    const recs = planCreate({ ...base, cgroup: v2, spec: spec({ mounts: [cgMount] }, { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'cgroup' }] }) });
    assert.deepEqual(ops(recs, 'mount'), [['mount', 'cgroup2', '/sys/fs/cgroup', 'cgroup2', String(MS.NOSUID | MS.NOEXEC | MS.NODEV | MS.RDONLY), '0', '']]);
  });

  it('a cgroup mount without cgroups is refused naming the mount', () => {
    assert.throws(() => planCreate({ ...base, spec: spec({ mounts: [cgMount] }) }), (e: LxrError) => e.field === 'mounts[0]');
  });

  it('default devices and /dev symlinks; the spec’s own device wins; a user namespace binds instead of mknod', () => {
    const recs = planCreate({ ...base, spec: spec({}, { namespaces: [{ type: 'mount' }], devices: [{ type: 'c', path: '/dev/null', major: 1, minor: 3, fileMode: 0o600 }] }) });
    const devs = ops(recs, 'mkdev');
    assert.equal(devs.length, 6);
    assert.deepEqual(devs[0], ['mkdev', '/dev/null', 'c', '1', '3', String(0o600), '0', '0']);
    assert.ok(devs.some((d) => d[1] === '/dev/tty' && d[3] === '5' && d[4] === '0'));
    assert.ok(ops(recs, 'symlink').some((s) => s[1] === 'pts/ptmx' && s[2] === '/dev/ptmx'));
    const userns = planCreate({
      ...base,
      spec: spec({}, { namespaces: [{ type: 'mount' }, { type: 'user' }], uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }], gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }] }),
    });
    assert.equal(ops(userns, 'mkdev').length, 0);
    assert.ok(ops(userns, 'mount').some((m) => m[1] === '/dev/null' && m[2] === '/dev/null'));
    assert.deepEqual(ops(userns, 'uid_map'), [['uid_map', '0', '1000', '1']]);
  });

  it('no devices are made when /dev is bind-mounted from elsewhere', () => {
    const recs = planCreate({ ...base, spec: spec({ mounts: [{ destination: '/dev', type: 'bind', source: '/dev', options: ['rbind'] }] }) });
    assert.equal(ops(recs, 'mkdev').length, 0);
  });

  it('process: rlimits, caps masks, ambient only where permitted and inheritable, nnp, user, env, args', () => {
    const s = spec();
    s.process = {
      user: { uid: 1000, gid: 1000, additionalGids: [2000, 3000], umask: 0o22 },
      args: ['sleep', '1'],
      cwd: '/tmp',
      env: ['A=1', 'B=2'],
      noNewPrivileges: true,
      oomScoreAdj: 100,
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }, { type: 'RLIMIT_CORE', soft: 18446744073709551615, hard: 18446744073709551615 }],
      capabilities: {
        bounding: ['CAP_CHOWN', 'CAP_KILL'],
        effective: ['CAP_KILL'],
        permitted: ['CAP_CHOWN', 'CAP_KILL'],
        inheritable: ['CAP_KILL'],
        ambient: ['CAP_KILL', 'CAP_CHOWN'],
      },
    };
    const recs = planCreate({ ...base, spec: s });
    assert.deepEqual(ops(recs, 'rlimit'), [['rlimit', '7', '1024', '4096'], ['rlimit', '4', '18446744073709551615', '18446744073709551615']]);
    // CAP_CHOWN=0 CAP_KILL=5; CAP_CHOWN is not inheritable, so it cannot be ambient
    assert.deepEqual(ops(recs, 'caps'), [['caps', '0x21', '0x20', '0x21', '0x20', '0x20']]);
    assert.deepEqual(ops(recs, 'no_new_privs'), [['no_new_privs']]);
    assert.deepEqual(ops(recs, 'user'), [['user', '1000', '1000']]);
    assert.deepEqual(ops(recs, 'groups'), [['groups', '2000', '3000']]);
    assert.deepEqual(ops(recs, 'umask'), [['umask', String(0o22)]]);
    assert.deepEqual(ops(recs, 'oom_score_adj'), [['oom_score_adj', '100']]);
    assert.deepEqual(ops(recs, 'env'), [['env', 'A=1'], ['env', 'B=2']]);
    assert.deepEqual(ops(recs, 'args'), [['args', 'sleep', '1']]);
    assert.deepEqual(ops(recs, 'cwd'), [['cwd', '/tmp']]);
  });

  it('seccomp: default action, arches, one rule per name, argument comparisons', () => {
    const recs = planCreate({
      ...base,
      spec: spec({}, {
        namespaces: [{ type: 'mount' }],
        seccomp: {
          defaultAction: 'SCMP_ACT_ALLOW',
          architectures: ['SCMP_ARCH_X86_64'],
          syscalls: [
            { names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
            { names: ['clone'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, op: 'SCMP_CMP_MASKED_EQ', value: 0x10000000, valueTwo: 0x10000000 }] },
          ],
        },
      }),
    });
    assert.deepEqual(ops(recs, 'seccomp_default'), [['seccomp_default', String(0x7fff0000)]]);
    assert.deepEqual(ops(recs, 'seccomp_arch'), [['seccomp_arch', 'x86_64']]);
    assert.deepEqual(ops(recs, 'seccomp_rule'), [
      ['seccomp_rule', String(0x50001), 'mkdir'],
      ['seccomp_rule', String(0x50001), 'mkdirat'],
      ['seccomp_rule', String(0x50001), 'clone', '0', '7', String(0x10000000), String(0x10000000)],
    ]);
  });

  it('sysctl keys become /proc/sys paths; a key with a path in it is refused', () => {
    const recs = planCreate({ ...base, spec: spec({}, { namespaces: [{ type: 'mount' }], sysctl: { 'net.ipv4.ip_forward': '1' } }) });
    assert.deepEqual(ops(recs, 'sysctl'), [['sysctl', '/proc/sys/net/ipv4/ip_forward', '1']]);
    assert.throws(() => planCreate({ ...base, spec: spec({}, { namespaces: [{ type: 'mount' }], sysctl: { '../../x': '1' } }) }), (e: LxrError) => e.field === 'linux.sysctl.../../x');
  });

  it('stdio, control socket, exit file, overlay and readonly root', () => {
    const recs = planCreate({
      ...base,
      stdio: { mode: 'log', path: '/s/c.log' },
      overlay: { lower: ['/l/2', '/l/1'], upper: '/c/upper', work: '/c/work', target: '/c/rootfs' },
      spec: spec({ root: { path: 'rootfs', readonly: true } }),
    });
    assert.deepEqual(ops(recs, 'stdio'), [['stdio', 'log', '/s/c.log']]);
    assert.deepEqual(ops(recs, 'control'), [['control', '/s/ctl.sock']]);
    assert.deepEqual(ops(recs, 'exit_file'), [['exit_file', '/s/exit.json']]);
    assert.deepEqual(ops(recs, 'overlay'), [['overlay', '/c/upper', '/c/work', '/l/2', '/l/1']]);
    assert.deepEqual(ops(recs, 'rootfs_readonly'), [['rootfs_readonly']]);
  });

  it('started as part of create: autostart instead of a control socket (nobody can start it twice)', () => {
    const recs = planCreate({ ...base, spec: spec(), start: true });
    assert.deepEqual(ops(recs, 'autostart'), [['autostart']]);
    assert.deepEqual(ops(recs, 'control'), []);
    assert.deepEqual(ops(recs, 'exit_file'), [['exit_file', '/s/exit.json']]);
    assert.deepEqual(ops(planCreate({ ...base, spec: spec(), start: false }), 'autostart'), []);
  });

  it('a spec without process cannot be created', () => {
    assert.throws(() => planCreate({ ...base, spec: { ...spec(), process: undefined } as Spec }), (e: LxrError) => e.field === 'process');
  });
});

describe('planExec', () => {
  it('joins every namespace of the init through /proc, keeps joined paths, and the cgroups', () => {
    const s = spec({}, { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: '/run/netns/n' }, { type: 'user' }] });
    const recs = planExec({ pid: 77, spec: s, process: s.process!, procsFiles: ['/cg/cgroup.procs'], detach: true });
    assert.deepEqual(ops(recs, 'target'), [['target', '77']]);
    assert.deepEqual(ops(recs, 'ns'), [
      ['ns', 'pid', '/proc/77/ns/pid'],
      ['ns', 'mount', '/proc/77/ns/mnt'],
      ['ns', 'net', '/run/netns/n'],
      ['ns', 'user', '/proc/77/ns/user'],
    ]);
    assert.deepEqual(ops(recs, 'cgroup'), [['cgroup', '/cg/cgroup.procs']]);
    assert.deepEqual(ops(recs, 'detach'), [['detach']]);
  });
});

describe('plan encoding', () => {
  it('round-trips, including empty arguments', () => {
    const recs: PlanRecord[] = [['id', 'c1'], ['ns', 'pid', ''], ['no_new_privs'], ['args', 'sh', '-c', 'echo a b']];
    assert.deepEqual(decodePlan(encodePlan(recs)), recs);
    assert.equal(encodePlan([['id', 'x']]).toString(), 'id\u00001\u0000x\u0000');
  });
  it('refuses a NUL inside a value', () => {
    assert.throws(() => encodePlan([['env', 'A=\u0000']]), (e: LxrError) => e.reason === 'LXR_INVALID_SPEC');
  });
});

describe('namespace combinations the init cannot set up are refused', () => {
  const cases: Array<[string, Spec['linux']]> = [
    ['joined user ns + new mount ns', { namespaces: [{ type: 'user', path: '/proc/1/ns/user' }, { type: 'mount' }] }],
    ['new user ns + joined net ns', { namespaces: [{ type: 'user' }, { type: 'mount' }, { type: 'network', path: '/run/netns/x' }], uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }], gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }] }],
  ];
  for (const [name, linux] of cases) {
    it(name, () => {
      assert.throws(() => planCreate({ ...base, spec: spec({}, linux) }), (e: LxrError) => e.reason === 'LXR_INVALID_SPEC' && e.field === 'linux.namespaces' && /not supported yet|cannot yet/.test(e.message));
    });
  }
});

describe('relative bind sources', () => {
  it('resolve against the bundle, as the runtime-spec says', () => {
    const recs = planCreate({
      ...base,
      bundle: '/b',
      spec: spec({ mounts: [{ destination: '/data', type: 'bind', source: 'data/x', options: ['rbind'] }, { destination: '/abs', type: 'bind', source: '/host', options: ['rbind'] }] }),
    });
    assert.deepEqual(ops(recs, 'mount').map((m) => m[1]), ['/b/data/x', '/host']);
  });
});
