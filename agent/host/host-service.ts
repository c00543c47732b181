// Facts about this host (kernel, cgroup layout, cpus, memory, architecture,
// the operator's labels) and what it is using now. A plain class.
import os from 'node:os';
import type { CgroupMode } from '../cgroups/cgroup.js';
import { hostPlatform } from '../image/registry/platform.js';

import { LXR_VERSION } from '../../proto/shared/version.js';

export const AGENT_VERSION = LXR_VERSION;

export interface HostUsage {
  containers: number;
  running: number;
  reservedCpus: number;
  reservedMemoryBytes: number;
  load1: number;
  memoryUsedBytes: number;
}

export interface HostInfo {
  hostname: string;
  kernel: string;
  cgroupMode: CgroupMode | '';
  cpus: number;
  memoryBytes: number;
  architecture: string;
  labels: Record<string, string>;
  usage: HostUsage;
  version: string;
}

export interface HostServiceOptions {
  cgroupMode: CgroupMode | null;
  labels?: Record<string, string>;
  /** Containers on the host and the limits of the running ones. */
  containerUsage(): Promise<{ containers: number; running: number; reservedCpus: number; reservedMemoryBytes: number }>;
}

export class HostService {
  constructor(private readonly o: HostServiceOptions) {}

  async info(): Promise<HostInfo> {
    const c = await this.o.containerUsage();
    const total = os.totalmem();
    return {
      hostname: os.hostname(),
      kernel: os.release(),
      cgroupMode: this.o.cgroupMode ?? '',
      // What this process may use (cpusets, affinity), as Go's runtime.NumCPU.
      cpus: os.availableParallelism(),
      memoryBytes: total,
      architecture: hostPlatform().architecture,
      labels: { ...(this.o.labels ?? {}) },
      usage: { ...c, load1: os.loadavg()[0] ?? 0, memoryUsedBytes: total - os.freemem() },
      version: AGENT_VERSION,
    };
  }
}
