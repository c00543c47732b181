// The scheduler's vocabulary: what it sees of a host, what a workspace asks
// for, and its answer. Plain data so schedule() stays a pure function that the
// controller can call with any snapshot (store, tests, a what-if).

/** A host as the scheduler sees it: capacity, state and what is already promised. */
export interface HostView {
  name: string;
  ready: boolean;
  cordoned: boolean;
  cpus: number;
  memoryBytes: number;
  /** GOARCH name (amd64, arm64, ...); the usual aliases (x86_64, aarch64) are accepted. */
  architecture: string;
  labels: Record<string, string>;
  /** Sum of the requests of workspaces placed there, including ones still being created. */
  reservedCpus: number;
  reservedMemoryBytes: number;
  /** How many workspaces are placed there. */
  workspaces: number;
}

export interface ScheduleRequest {
  /** 0 means best effort: fits any host on cpu. */
  cpus: number;
  /** 0 means best effort: fits any host on memory. */
  memoryBytes: number;
  /** Empty or absent: any architecture. */
  architecture?: string;
  /** Every label must match exactly. */
  selector?: Record<string, string>;
  /** Pinned host (`--host`); empty or absent: the scheduler chooses. */
  host?: string;
}

export type Policy = 'spread' | 'binpack';

export interface HostReason {
  host: string;
  reason: string;
}

export type Decision =
  | { ok: true; host: string }
  | { ok: false; pinned?: string; unknownHost?: boolean; reasons: HostReason[] };

export type Rejection = Extract<Decision, { ok: false }>;
