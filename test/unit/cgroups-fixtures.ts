// Fixture hosts for the cgroup unit tests: real-world mountinfo texts for v1
// (separate and combined cpu/cpuacct), hybrid and v2 hosts, and a fake
// cgroupfs that populates control files on mkdir the way the kernel does.

import { posix } from 'node:path';
import { detectLayout, FakeCgroupFs, type CgroupLayout } from '../../agent/cgroups/index.js';

/** This repository's CI machine: v1 controllers each on their own mount, cgroup2 at unified without controllers. */
export const MOUNTINFO_HYBRID_SEPARATE = `\
22 1 8:1 / / rw,relatime - ext4 /dev/root rw
23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,size=8192k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

/** The same machine without the unified mount: pure v1, separate cpu and cpuacct. */
export const MOUNTINFO_V1_SEPARATE = MOUNTINFO_HYBRID_SEPARATE.split('\n')
  .filter((l) => !l.includes('cgroup2'))
  .join('\n');

/** CentOS 7 / Ubuntu 18.04 style: combined "cpu,cpuacct" and "net_cls,net_prio" mounts, optional fields. */
export const MOUNTINFO_V1_COMBINED = `\
18 62 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
29 24 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory
30 24 0:26 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpuset
31 24 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,net_cls,net_prio
32 24 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
33 24 0:29 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,devices
34 24 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,freezer
`;

/** Ubuntu 20.04 / Debian 10 style hybrid: combined cpu,cpuacct plus cgroup2 (nsdelegate) at unified. */
export const MOUNTINFO_HYBRID_COMBINED = `\
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
26 24 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
29 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
30 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
31 24 0:27 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpuset
33 24 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids
`;

/** Ubuntu 22.04 / Fedora style: cgroup2 at the root. */
export const MOUNTINFO_V2 = `\
22 29 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
36 22 0:31 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:10 - bpf bpf rw,mode=700
`;

export const ROOT = '/sys/fs/cgroup';
const V1_UNLIMITED = '9223372036854771712\n';

export interface FakeHostOptions {
  /** v1 swap accounting (memory.memsw.*) and v2 memory.swap.max present; default true. */
  swap?: boolean;
  /** The v2 root's cgroup.controllers; default "cpuset cpu io memory hugetlb pids" on v2, "" on hybrid. */
  v2Controllers?: string;
}

function v1Files(controllers: string[], swap: boolean): Record<string, string> {
  const f: Record<string, string> = { 'cgroup.procs': '', tasks: '', notify_on_release: '0\n' };
  if (controllers.includes('memory')) {
    Object.assign(f, {
      'memory.limit_in_bytes': V1_UNLIMITED,
      'memory.soft_limit_in_bytes': V1_UNLIMITED,
      'memory.usage_in_bytes': '0\n',
      'memory.stat': 'cache 0\ninactive_file 0\ntotal_inactive_file 0\n',
      'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n',
    });
    if (swap) f['memory.memsw.limit_in_bytes'] = V1_UNLIMITED;
  }
  if (controllers.includes('cpu')) Object.assign(f, { 'cpu.shares': '1024\n', 'cpu.cfs_quota_us': '-1\n', 'cpu.cfs_period_us': '100000\n' });
  if (controllers.includes('cpuacct')) Object.assign(f, { 'cpuacct.usage': '0\n', 'cpuacct.stat': 'user 0\nsystem 0\n' });
  if (controllers.includes('cpuset')) Object.assign(f, { 'cpuset.cpus': '\n', 'cpuset.mems': '\n' });
  if (controllers.includes('pids')) Object.assign(f, { 'pids.max': 'max\n', 'pids.current': '0\n' });
  return f;
}

function v2Files(swap: boolean): Record<string, string> {
  const f: Record<string, string> = {
    'cgroup.procs': '',
    'cgroup.controllers': '',
    'cgroup.subtree_control': '\n',
    'cgroup.kill': '',
    'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\n',
    'cpu.max': 'max 100000\n',
    'cpu.weight': '100\n',
    'cpuset.cpus': '\n',
    'cpuset.mems': '\n',
    'memory.current': '0\n',
    'memory.max': 'max\n',
    'memory.low': '0\n',
    'memory.stat': 'anon 0\nfile 0\ninactive_file 0\n',
    'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n',
    'pids.max': 'max\n',
    'pids.current': '0\n',
  };
  if (swap) f['memory.swap.max'] = 'max\n';
  return f;
}

export interface FakeHost {
  fs: FakeCgroupFs;
  layout: CgroupLayout;
  mountinfo: string;
}

/** A fake cgroupfs for the given mountinfo: hierarchy roots exist, and mkdir fills in control files. */
export function fakeHost(mountinfo: string, opts: FakeHostOptions = {}): FakeHost {
  const swap = opts.swap ?? true;
  const layout = detectLayout(mountinfo, ROOT);
  const fs = new FakeCgroupFs();
  const hierarchyOf = (dir: string) =>
    [...layout.hierarchies].sort((a, b) => b.mountpoint.length - a.mountpoint.length).find((h) => dir === h.mountpoint || dir.startsWith(`${h.mountpoint}/`));
  const populate = (dir: string, root: boolean) => {
    const h = hierarchyOf(dir);
    if (!h) return;
    const files = h.version === 1 ? v1Files(h.controllers, swap) : v2Files(swap);
    for (const [name, content] of Object.entries(files)) fs.setFile(posix.join(dir, name), content);
    if (!root) return;
    if (h.version === 1 && h.controllers.includes('cpuset')) {
      fs.setFile(posix.join(dir, 'cpuset.cpus'), '0-3\n').setFile(posix.join(dir, 'cpuset.mems'), '0\n');
    }
    if (h.version === 1 && h.controllers.includes('pids')) fs.removeFile(posix.join(dir, 'pids.max')).removeFile(posix.join(dir, 'pids.current'));
    if (h.version === 2) {
      fs.setFile(posix.join(dir, 'cgroup.controllers'), `${opts.v2Controllers ?? (layout.mode === 'v2' ? 'cpuset cpu io memory hugetlb pids' : '')}\n`);
      fs.removeFile(posix.join(dir, 'cgroup.kill'));
    }
  };
  for (const h of layout.hierarchies) {
    fs.addDir(h.mountpoint);
    populate(h.mountpoint, true);
  }
  fs.onMkdir = (dir) => populate(dir, false);
  return { fs, layout, mountinfo };
}

/** The writes recorded under `dir` in one hierarchy, as [file relative to the hierarchy root, value]. */
export function writesUnder(fs: FakeCgroupFs, root: string = ROOT): Array<[string, string]> {
  return fs.writes().map(([p, v]) => [posix.relative(root, p), v]);
}
