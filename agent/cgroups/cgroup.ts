// Control groups: the kernel's accounting and limiting of cpu, memory and
// pids for a group of processes. One interface, with a v2 (unified), a v1
// (one hierarchy per controller) and a hybrid backend (v1 controllers plus
// a v2 unified mount, as systemd sets up on many hosts).

export type CgroupMode = 'v1' | 'v2' | 'hybrid';

/** Limits, in the OCI runtime-spec's units (linux.resources). */
export interface CgroupLimits {
  memory?: { limit?: number; reservation?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  pids?: { limit: number };
  /**
   * Device access rules, applied in order (the OCI list starts with "deny
   * all"). Enforced where a v1 devices hierarchy exists (v1 and hybrid
   * hosts); cgroup v2 needs an eBPF device program, which LXR does not load
   * yet, so on a pure v2 host these rules are not enforced.
   */
  devices?: Array<{ allow: boolean; type?: string; major?: number; minor?: number; access?: string }>;
}

export interface CgroupStats {
  cpu: { usageNanos: number; userNanos: number; systemNanos: number };
  memory: { usageBytes: number; workingSetBytes: number; limitBytes: number | null; oomKills: number };
  pids: { current: number; limit: number | null };
}

/** How the container sees its cgroups: one bind mount per hierarchy. */
export interface CgroupMountSource {
  /** Host directory of this container's cgroup in that hierarchy. */
  hostDir: string;
  /**
   * Where it appears under the container's /sys/fs/cgroup ("" for v2's root, "memory", "unified", ...).
   * A combined v1 mount keeps its host name ("cpu,cpuacct"); the runtime adds a symlink per
   * controller ("cpu", "cpuacct" -> "cpu,cpuacct") as hosts and runc do.
   */
  subdir: string;
  /**
   * How this hierarchy is mounted afresh from inside the container's own
   * cgroup namespace (whose root is the container's cgroup): the filesystem
   * type and its options ("cpu,cpuacct", "none,name=systemd", "" for v2).
   */
  fsType: 'cgroup' | 'cgroup2';
  data: string;
}

export interface CgroupHandle {
  /** Relative cgroup path inside each hierarchy, e.g. "lxr/abc". */
  readonly path: string;
  /** Every cgroup.procs file a process must be written to, to join this cgroup in all hierarchies. */
  readonly procsFiles: string[];
  /** What the container's /sys/fs/cgroup is made of. */
  readonly mountSources: CgroupMountSource[];
  /** A counter of OOM kills the monitor reads before and after the container runs. */
  readonly oomCounter: { file: string; key: string } | null;
  update(limits: CgroupLimits): Promise<void>;
  stats(): Promise<CgroupStats>;
  /** Kill every process left in the cgroup (SIGKILL), wait until it is empty. */
  killAll(): Promise<void>;
  /** Remove the cgroup from every hierarchy; succeeds if it is already gone. */
  destroy(): Promise<void>;
}

export interface CgroupManager {
  readonly mode: CgroupMode;
  /** Creates (or reuses, if it exists and is empty) the cgroup at `path` and applies limits. */
  create(path: string, limits: CgroupLimits): Promise<CgroupHandle>;
  /** A handle on an existing cgroup (after an agent restart), without changing it. */
  open(path: string): Promise<CgroupHandle>;
  /**
   * Where the cgroup at `path` is (or will be) in each hierarchy, touching
   * nothing: for planning a container whose cgroup is made meanwhile.
   */
  handle(path: string): CgroupHandle;
}
