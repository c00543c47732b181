// Differential tests against runc: for each row of a table of
// configurations, ONE bundle (busybox rootfs + a runc-like config with the
// row's changes) runs under runc (`runc --root R run --bundle B ID`) and under
// LXR's runtime command line (`lxr-runtime --root R run --bundle B ID`), both
// with stdout/stderr on pipes, and what the container observes (stdout,
// stderr) and its exit status must be the same. The two configs differ only
// in cgroupsPath (invisible inside: cgroup namespace), and the rootfs is
// rebuilt between the runs so writes by the first cannot show in the second.
//
// Normalisation is minimal and per row: only lines where runc 1.1.5 (the
// Debian 12 runc this runs against) deliberately differs from LXR are
// rewritten, each with the reason next to it (see NORMALISERS below).
//
// Needs root and /usr/sbin/runc; skipped otherwise. Each container gets a
// unique cgroupsPath under /lxr-test-diff-<rand>, removed from every
// hierarchy in after(), together with the bundles and state roots, and any
// container runc or LXR left behind is force-deleted first.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import type { Spec } from '../../agent/runtime/oci.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import { makeBundle, repoRoot } from '../helpers/rootfs.js';
import { baseConfig, type BaseConfigOptions } from '../helpers/runc-spec.js';
import { tempDir, uniqueId } from '../helpers/tmp.js';

const RUNC = '/usr/sbin/runc';
const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root' : !existsSync(RUNC) ? `needs ${RUNC}` : false;

/** The runtime CLI from the same build as this file (dist-<x>/test/integration → dist-<x>/agent/runtime/cli.js). */
function lxrCli(): string {
  const root = repoRoot();
  const distDir = path.relative(root, fileURLToPath(import.meta.url)).split(path.sep)[0]!;
  return path.join(root, distDir, 'agent', 'runtime', 'cli.js');
}

const CGROUP_PARENT = uniqueId('lxr-test-diff-');
const RUN_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------
// What the container prints.

/** The common observation script: identity, capabilities, devices, limits, mounts. */
const OBSERVE = [
  'id',
  'hostname',
  "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status",
  'ls /dev',
  'cat /proc/self/uid_map /proc/self/gid_map',
  'ulimit -n',
  'cat /proc/self/oom_score_adj',
  'pwd',
  'env | sort',
  'umask',
  // mount point, per-mount options, fs type, source, super options
  "awk '{ for (i = 7; $i != \"-\"; i++); print $5, $6, $(i+1), $(i+2), $(i+3) }' /proc/self/mountinfo | sort",
  'ls /sys/fs/cgroup',
].join('; ');

const sh = (script: string): string[] => ['sh', '-c', script];

// ---------------------------------------------------------------------------
// Normalisers: each rewrites only lines where runc 1.1.5 and LXR differ by
// design, never the whole output.

type Normaliser = (out: string) => string;

const mapLines =
  (f: (line: string) => string | null): Normaliser =>
  (out) =>
    out
      .split('\n')
      .map(f)
      .filter((l): l is string => l !== null)
      .join('\n');

const NORMALISERS = {
  /** /sys/fs/cgroup on cgroup v1: the spec asks for "ro"; LXR remounts the
   *  tmpfs that holds the hierarchies read-only, runc 1.1.5 leaves that
   *  tmpfs writable (only the hierarchy binds are read-only). Mount point
   *  and the other options are still compared. */
  cgroupTmpfsRo: mapLines((l) => (/^\/sys\/fs\/cgroup [rw][ow],/.test(l) ? l.replace(/^(\S+) r[ow],(\S+ tmpfs tmpfs) r[ow],/, '$1 R?,$2 R?,') : l)),
  /** Hybrid hosts: LXR also places the container in the cgroup2 "unified"
   *  hierarchy and shows it at /sys/fs/cgroup/unified; runc 1.1.5's v1
   *  manager ignores that hierarchy. The line (and the ls entry) is dropped. */
  /** The mount source of a named v1 hierarchy: runc 1.1.5 (with a cgroup
   *  namespace) mounts a new cgroup fs with source "systemd"; LXR bind-mounts
   *  the container's directory of the host hierarchy, whose source is
   *  "cgroup". Both show the container's own cgroup as the root. */
  namedHierarchySource: mapLines((l) => l.replace(/^(\/sys\/fs\/cgroup\/systemd \S+ cgroup) (cgroup|systemd) /, '$1 SOURCE ')),
  hybridUnified: mapLines((l) => (l === 'unified' || l.startsWith('/sys/fs/cgroup/unified ') ? null : l)),
} satisfies Record<string, Normaliser>;

/** For every row that prints mountinfo and ls /sys/fs/cgroup. */
const MOUNT_NORMALISERS: Normaliser[] = [
  NORMALISERS.cgroupTmpfsRo,
  NORMALISERS.namedHierarchySource,
  NORMALISERS.hybridUnified,
];

// ---------------------------------------------------------------------------
// The table.

interface RowContext {
  /** A scratch directory for this row (host side), removed after the file's tests. */
  scratch: string;
}

interface Row {
  name: string;
  opts?: BaseConfigOptions;
  /** Further changes to the config. */
  edit?: (c: Spec, ctx: RowContext) => void | Promise<void>;
  /** The exit status expected of runc, checking the row tests what it
   *  means to; LXR's must equal runc's unless `lxrExit` names a deliberate
   *  difference. */
  exit: number;
  lxrExit?: number;
  /** Applied to both stdouts before comparing. */
  stdout?: Normaliser[];
  /** Applied to both stderrs before comparing. */
  stderr?: Normaliser[];
  /** Compare stderr at all (default true). */
  compareStderr?: boolean;
  /** A known difference not resolved yet: the row runs and shows its diff, but does not fail the suite. */
  todo?: string;
  /** Extra checks on the two results (e.g. where only parts of stderr are comparable). */
  check?: (runc: Result, lxr: Result) => void;
}

const caps = (...names: string[]) => ({ bounding: [...names], effective: [...names], permitted: [...names] });

const ROWS: Row[] = [
  {
    name: 'defaults (runc spec), output on both streams',
    opts: { args: sh(`${OBSERVE}; echo to-stderr >&2`) },
    exit: 0,
    stdout: MOUNT_NORMALISERS,
  },
  {
    name: 'non-root user with additionalGids',
    opts: { args: sh(`${OBSERVE}; cat /proc/self/status | grep -E '^(Uid|Gid|Groups)'`), uid: 1000, gid: 1000, additionalGids: [2000] },
    exit: 0,
    stdout: MOUNT_NORMALISERS,
  },
  {
    name: 'nobody without additionalGids',
    opts: { args: sh("id; grep -E '^(Uid|Gid|Groups|Cap)' /proc/self/status"), uid: 65534, gid: 65534 },
    exit: 0,
  },
  {
    name: 'capabilities: add CAP_SYS_ADMIN',
    opts: { args: sh(OBSERVE) },
    edit: (c) => {
      c.process!.capabilities = caps('CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_ADMIN');
    },
    exit: 0,
    stdout: MOUNT_NORMALISERS,
  },
  {
    name: 'capabilities: none at all',
    opts: { args: sh("grep -E '^(Cap|NoNewPrivs)' /proc/self/status; cat /proc/self/oom_score_adj") },
    edit: (c) => {
      c.process!.capabilities = { bounding: [], effective: [], permitted: [], inheritable: [], ambient: [] };
    },
    exit: 0,
  },
  {
    name: 'capabilities: inheritable + ambient for a non-root user (one ambient cap not inheritable)',
    opts: { args: sh("id; grep -E '^(Cap|NoNewPrivs)' /proc/self/status"), uid: 1000, gid: 1000 },
    edit: (c) => {
      c.process!.capabilities = {
        ...caps('CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'),
        inheritable: ['CAP_KILL', 'CAP_NET_BIND_SERVICE'],
        ambient: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'],
      };
    },
    exit: 0,
  },
  {
    name: 'noNewPrivileges false',
    opts: { args: sh("grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status") },
    edit: (c) => {
      c.process!.noNewPrivileges = false;
    },
    exit: 0,
  },
  {
    name: 'read-only rootfs: touch fails',
    opts: { args: sh('touch /x'), readonly: true },
    exit: 1,
  },
  {
    name: 'writable rootfs: touch works',
    opts: { args: sh('touch /x && ls -l /x | cut -c1-10; awk \'$5 == "/" { print $6 }\' /proc/self/mountinfo'), readonly: false },
    exit: 0,
  },
  {
    name: 'hostname',
    opts: { args: sh('hostname; cat /proc/sys/kernel/hostname'), hostname: 'lxr-diff-host' },
    exit: 0,
  },
  {
    name: 'rlimits: NOFILE, NPROC, CORE',
    opts: { args: sh('ulimit -n; ulimit -Hn; cat /proc/self/limits | grep -E "^Max (open files|processes|core file size)"') },
    edit: (c) => {
      c.process!.rlimits = [
        { type: 'RLIMIT_NOFILE', soft: 4096, hard: 8192 },
        { type: 'RLIMIT_NPROC', soft: 500, hard: 600 },
        { type: 'RLIMIT_CORE', soft: 0, hard: 1024 * 1024 },
      ];
    },
    exit: 0,
  },
  {
    name: 'oomScoreAdj',
    opts: { args: sh('cat /proc/self/oom_score_adj; cat /proc/1/oom_score_adj') },
    edit: (c) => {
      c.process!.oomScoreAdj = 123;
    },
    exit: 0,
  },
  {
    name: 'cwd /tmp',
    opts: { args: sh('pwd; ls -ld . | cut -c1-10'), cwd: '/tmp' },
    exit: 0,
  },
  {
    name: 'env (no HOME given, non-root user)',
    opts: { args: sh('env | sort'), env: ['PATH=/bin:/sbin', 'FOO=bar baz', 'EMPTY='], uid: 1000, gid: 1000 },
    exit: 0,
  },
  {
    name: 'env with HOME given',
    opts: { args: sh('env | sort'), env: ['PATH=/bin', 'HOME=/somewhere'] },
    exit: 0,
  },
  {
    name: 'umask 027',
    opts: { args: sh('umask; touch /tmp/f; mkdir /tmp/d; stat -c "%a %n" /tmp/f /tmp/d'), readonly: false },
    edit: (c) => {
      c.process!.user.umask = 0o027;
    },
    exit: 0,
  },
  {
    name: 'sysctl in the container\'s network and ipc namespaces',
    opts: { args: sh('cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/msgmax') },
    edit: (c) => {
      c.linux!.sysctl = { 'net.ipv4.ip_forward': '1', 'net.ipv4.ip_unprivileged_port_start': '80', 'kernel.msgmax': '16384' };
    },
    exit: 0,
  },
  {
    // The rule list is sorted: the kernel lists v1 rules in the order they
    // were written, which is not part of what the container can do.
    name: 'an extra device node with a cgroup rule',
    opts: {
      args: sh(
        'ls -ln /dev/fuse /dev/null | awk \'{ print $1, $3, $4, $5, $6, $NF }\'; sort /sys/fs/cgroup/devices/devices.list; ' +
          'cat /dev/fuse 2>&1 | sed "s/^cat: //"',
      ),
    },
    edit: (c) => {
      c.linux!.devices = [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o640, uid: 0, gid: 0 }];
      c.linux!.resources!.devices!.push({ allow: true, type: 'c', major: 10, minor: 229, access: 'rw' });
    },
    exit: 0,
  },
  {
    name: 'custom masked paths and readonly paths',
    opts: {
      args: sh(
        'ls -A /home; wc -c < /proc/cpuinfo; echo x > /tmp/f; echo "write /tmp: $?"; cat /etc/group; ' +
          "awk '{print $5, $6}' /proc/self/mountinfo | grep -E '^/(home|tmp|proc/cpuinfo|etc)' | sort",
      ),
      readonly: false,
    },
    edit: (c) => {
      c.linux!.maskedPaths = [...c.linux!.maskedPaths!, '/home', '/proc/cpuinfo', '/does/not/exist'];
      c.linux!.readonlyPaths = [...c.linux!.readonlyPaths!, '/tmp', '/etc/group', '/also/missing'];
    },
    exit: 0,
  },
  {
    name: 'extra tmpfs mount with options',
    opts: { args: sh("stat -c '%a %U %G' /scratch; grep ' /scratch ' /proc/self/mountinfo | awk '{ print $5, $6, $(NF-2), $NF }'") },
    edit: (c) => {
      c.mounts!.push({ destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'size=1m', 'mode=700'] });
    },
    exit: 0,
  },
  {
    name: 'read-only bind mount of a host directory',
    opts: {
      args: sh("cat /data/hello; ls -A /data; touch /data/new; echo \"touch: $?\"; grep ' /data ' /proc/self/mountinfo | awk '{ print $5, $6 }'"),
    },
    edit: async (c, ctx) => {
      const host = path.join(ctx.scratch, 'hostdir');
      await mkdir(host, { recursive: true });
      await writeFile(path.join(host, 'hello'), 'hello from the host\n');
      c.mounts!.push({ destination: '/data', type: 'bind', source: host, options: ['rbind', 'ro', 'nosuid'] });
    },
    exit: 0,
  },
  {
    name: 'memory and pids limits seen in /sys/fs/cgroup',
    opts: {
      args: sh(
        'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes /sys/fs/cgroup/pids/pids.max; ' +
          'cat /proc/self/cgroup | grep -E ":(memory|pids|cpu,cpuacct|cpu|cpuacct|devices|freezer|blkio|cpuset|name=systemd):" | sort',
      ),
    },
    edit: (c) => {
      c.linux!.resources = { ...c.linux!.resources, memory: { limit: 64 * 1024 * 1024, reservation: 32 * 1024 * 1024 }, pids: { limit: 64 } };
    },
    exit: 0,
  },
  {
    name: 'exit 0',
    opts: { args: sh('exit 0') },
    exit: 0,
  },
  {
    name: 'exit 3',
    opts: { args: sh('echo before; exit 3') },
    exit: 3,
  },
  {
    // sh is the pid namespace's init here, which SIGKILL from inside cannot
    // kill: a child shell kills itself and the init exits with its status
    // (the trailing exit keeps busybox from exec'ing the child in its place).
    name: 'child killed by SIGKILL, init exits with its status',
    opts: { args: sh('echo before; sh -c \'kill -9 $$\'; exit $?') },
    exit: 137,
  },
  {
    name: 'init killed by SIGKILL (no pid namespace)',
    opts: { args: sh('echo before; kill -9 $$') },
    edit: (c) => {
      c.linux!.namespaces = c.linux!.namespaces!.filter((ns) => ns.type !== 'pid');
    },
    exit: 137,
  },
  {
    name: 'missing binary (absolute path)',
    opts: { args: ['/no/such/binary'] },
    // runc 1.1.5 exits 1 for any failed start; LXR exits 127 for a missing
    // program, as README documents ("Missing programs fail before start").
    exit: 1,
    lxrExit: 127,
    // The runtimes' own error lines differ in form (runc's logrus line vs
    // "lxr-runtime: ..."): checkMissingBinary compares what they say.
    compareStderr: false,
    check: checkMissingBinary,
  },
  {
    name: 'missing binary (PATH lookup)',
    opts: { args: ['no-such-binary'] },
    exit: 1,
    lxrExit: 127,
    // The runtimes' own error lines differ in form (runc's logrus line vs
    // "lxr-runtime: ..."): checkMissingBinary compares what they say.
    compareStderr: false,
    check: checkMissingBinary,
  },
  {
    name: 'user namespace (0 -> 100000, 65536)',
    opts: { args: sh(OBSERVE) },
    edit: (c) => {
      c.linux!.namespaces!.push({ type: 'user' });
      c.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      c.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    },
    exit: 0,
    stdout: MOUNT_NORMALISERS,
  },
];

// ---------------------------------------------------------------------------
// Running.

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Both name the program in their message; neither container printed anything. */
function checkMissingBinary(runc: Result, lxr: Result): void {
  const program = /exec: \\?"?([^"\\:]+)/.exec(runc.stderr)?.[1];
  assert.ok(program, `runc's message names no program:\n${runc.stderr}`);
  assert.ok(lxr.stderr.includes(`exec: ${program}:`), `LXR's message does not name ${program}:\n${lxr.stderr}`);
  assert.equal(lxr.stdout, '');
  assert.equal(runc.stdout, '');
}

const children = new Set<number>();

function runCommand(cmd: string, args: string[], cwd: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = child.pid;
    if (pid !== undefined) children.add(pid);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      if (pid !== undefined) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      reject(new Error(`${cmd} ${args.join(' ')}: no exit after ${RUN_TIMEOUT_MS} ms (stdout so far: ${stdout}, stderr: ${stderr})`));
    }, RUN_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      if (pid !== undefined) children.delete(pid);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (pid !== undefined) children.delete(pid);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A line diff of two texts: "  same", "- only in runc", "+ only in lxr". */
function lineDiff(a: string, b: string): string {
  const x = a.split('\n');
  const y = b.split('\n');
  // LCS table; outputs are small.
  const l: number[][] = Array.from({ length: x.length + 1 }, () => new Array<number>(y.length + 1).fill(0));
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      l[i]![j] = x[i] === y[j] ? l[i + 1]![j + 1]! + 1 : Math.max(l[i + 1]![j]!, l[i]![j + 1]!);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) {
      out.push(`  ${x[i++]}`);
      j++;
    } else if (j < y.length && (i >= x.length || l[i]![j + 1]! >= l[i + 1]![j]!)) {
      out.push(`+ ${y[j++]}`);
    } else {
      out.push(`- ${x[i++]}`);
    }
  }
  return out.join('\n');
}

function assertSame(what: string, runc: string, lxr: string): void {
  if (runc === lxr) return;
  assert.fail(`${what} differs (- runc, + lxr):\n${lineDiff(runc, lxr)}`);
}

const apply = (fs: Normaliser[] | undefined, s: string): string => (fs ?? []).reduce((acc, f) => f(acc), s);

// Bundles, state roots and host dirs; removed by tempDir's after() once the
// suite's own after() has deleted the containers.
const work = skip ? '' : await tempDir('diff');
// A user-namespaced root (host uid 100000) must be able to reach the rootfs.
if (work) await chmod(work, 0o755);

describe('differential: lxr-runtime vs runc on the same bundle', { skip }, () => {
  const runcRoot = () => path.join(work, 'runc-state');
  const lxrRoot = () => path.join(work, 'lxr-state');
  const runcIds: string[] = [];
  const lxrIds: string[] = [];
  let n = 0;

  after(async () => {
    const errors: unknown[] = [];
    for (const pid of children) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // Containers left behind by a failed run: `delete -f` is a no-op error when none is left.
    for (const id of runcIds) {
      if (existsSync(path.join(runcRoot(), id))) {
        const r = await runCommand(RUNC, ['--root', runcRoot(), 'delete', '-f', id], '/').catch((e: unknown) => (errors.push(e), null));
        if (r && r.code !== 0) errors.push(new Error(`runc delete -f ${id}: ${r.stderr}`));
      }
    }
    for (const id of lxrIds) {
      if (existsSync(path.join(lxrRoot(), id))) {
        const r = await runCommand(process.execPath, [lxrCli(), '--root', lxrRoot(), 'delete', '--force', id], '/').catch((e: unknown) => (errors.push(e), null));
        if (r && r.code !== 0) errors.push(new Error(`lxr-runtime delete --force ${id}: ${r.stderr}`));
      }
    }
    await removeCgroupTree(CGROUP_PARENT).catch((e: unknown) => errors.push(e));
    // The work dir (bundles, state roots, host dirs) is removed by tempDir's own after().
    if (errors.length) throw new AggregateError(errors, `differential cleanup: ${errors.map(String).join('; ')}`);
  });

  for (const row of ROWS) {
    it(row.name, row.todo ? { todo: row.todo } : {}, async () => {
      const k = n++;
      const scratch = path.join(work, `row${k}`);
      await mkdir(scratch, { recursive: true });
      const config = baseConfig(row.opts);
      await row.edit?.(config, { scratch });
      const bundle = path.join(scratch, 'bundle');
      // The cgroupsPath is the only difference between the two configs; the
      // container cannot see it (cgroup namespace).
      config.linux!.cgroupsPath = `/${CGROUP_PARENT}/runc-${k}`;
      await makeBundle(bundle, config);
      const runcId = `${CGROUP_PARENT}-runc-${k}`;
      runcIds.push(runcId);
      const runc = await runCommand(RUNC, ['--root', runcRoot(), 'run', '--bundle', bundle, runcId], bundle);

      // The same bundle again, with a pristine rootfs: rows with a writable
      // root must not see what runc's container left there.
      config.linux!.cgroupsPath = `/${CGROUP_PARENT}/lxr-${k}`;
      await rm(path.join(bundle, 'rootfs'), { recursive: true, force: true });
      await makeBundle(bundle, config);
      const lxrId = `${CGROUP_PARENT}-lxr-${k}`;
      lxrIds.push(lxrId);
      const lxr = await runCommand(process.execPath, [lxrCli(), '--root', lxrRoot(), 'run', '--bundle', bundle, lxrId], bundle);

      const show = (r: Result) => `exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
      const context = `\n== runc: ${show(runc)}\n== lxr: ${show(lxr)}`;
      assert.equal(runc.code, row.exit, `runc's exit status is not the one this row expects${context}`);
      if (row.lxrExit === undefined) assert.equal(lxr.code, runc.code, `exit status differs${context}`);
      else assert.equal(lxr.code, row.lxrExit, `LXR's exit status is not the documented one${context}`);
      assertSame('stdout', apply(row.stdout, runc.stdout), apply(row.stdout, lxr.stdout));
      if (row.compareStderr !== false) assertSame('stderr', apply(row.stderr, runc.stderr), apply(row.stderr, lxr.stderr));
      row.check?.(runc, lxr);
    });
  }
});
