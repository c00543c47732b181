// Hand-written TypeScript shapes of the lxr.agent.v1 and grpc.health.v1
// messages as @grpc/proto-loader delivers them (camelCase fields, 64-bit
// integers as numbers, enums as strings, defaults filled in, oneofs named by
// a virtual field). Request fields are optional: proto3 defaults apply.

// ---------------------------------------------------------------- health

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
export interface HealthCheckRequest {
  service?: string;
}
export interface HealthCheckResponse {
  status: ServingStatus;
}

// ---------------------------------------------------------------- host

export type GetInfoRequest = Record<string, never>;
export interface HostUsage {
  containers: number;
  running: number;
  reservedCpus: number;
  reservedMemoryBytes: number;
  load1: number;
  memoryUsedBytes: number;
}
export interface Peer {
  name?: string;
  address?: string;
  subnet?: string;
}
export interface SetPeersRequest {
  peers?: Peer[];
  protectedEndpoints?: string[];
}
export interface SetPeersResponse {
  routes: string[];
}
export interface GetInfoResponse {
  hostname: string;
  kernel: string;
  cgroupMode: string;
  cpus: number;
  memoryBytes: number;
  architecture: string;
  labels: Record<string, string>;
  usage: HostUsage | null;
  version: string;
}

// -------------------------------------------------------------- images

export interface Platform {
  os: string;
  architecture: string;
  variant: string;
}
export interface PullRequest {
  image?: string;
  platform?: Partial<Platform> | null;
}
export interface LayerProgress {
  digest: string;
  state: string;
  current: number;
  total: number;
}
export interface Image {
  names: string[];
  digest: string;
  configDigest: string;
  platform: Platform | null;
  sizeBytes: number;
  created: string;
}
export interface PullResponse {
  progress?: LayerProgress | null;
  image?: Image | null;
  /** proto-loader's oneof marker. */
  event?: 'progress' | 'image';
}
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
  exposedPorts: string[];
  labels: Record<string, string>;
}
export type ListImagesRequest = Record<string, never>;
export interface ListImagesResponse {
  images: Image[];
}
export interface InspectImageRequest {
  image?: string;
}
export interface InspectImageResponse {
  image: Image | null;
  config: ImageConfig | null;
  layers: string[];
}
export interface RemoveImageRequest {
  image?: string;
}
export interface RemoveImageResponse {
  untagged: string[];
  deleted: string;
}
export interface ImportImageRequest {
  path?: string;
  repository?: string;
}
/** One message of Images.Load: an archive's bytes, the repository in the first only. */
export interface LoadImageRequest {
  repository?: string;
  data?: Buffer;
}
export interface ImportImageResponse {
  images: Image[];
}

// ---------------------------------------------------------- containers

export interface Limits {
  cpus: number;
  memoryBytes: number;
  pids: number;
}
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
}
export interface NetworkSettings {
  mode: string;
  address: string;
  ports: PortMapping[];
}
export interface CreateContainerRequest {
  name?: string;
  image?: string;
  command?: string[];
  entrypoint?: string[];
  env?: string[];
  workdir?: string;
  user?: string;
  limits?: Partial<Limits> | null;
  labels?: Record<string, string>;
  network?: Partial<NetworkSettings> | null;
  hostname?: string;
  tty?: boolean;
  requestId?: string;
  ide?: string;
  start?: boolean;
}
export interface Container {
  name: string;
  id: string;
  image: string;
  imageDigest: string;
  state: string;
  pid: number;
  exitCode: number;
  signal: number;
  oomKilled: boolean;
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  labels: Record<string, string>;
  address: string;
  limits: Limits | null;
  ide: string;
  ideStatus: string;
}
export interface CreateContainerResponse {
  container: Container | null;
}
export interface StartContainerRequest {
  name?: string;
}
export interface StartContainerResponse {
  container: Container | null;
}
export interface StopContainerRequest {
  name?: string;
  graceSeconds?: number;
}
export interface StopContainerResponse {
  container: Container | null;
}
export interface KillContainerRequest {
  name?: string;
  signal?: string;
}
export type KillContainerResponse = Record<string, never>;
export interface RemoveContainerRequest {
  name?: string;
  force?: boolean;
}
export type RemoveContainerResponse = Record<string, never>;
export interface GetContainerRequest {
  name?: string;
}
export interface GetContainerResponse {
  container: Container | null;
}
export interface ListContainersRequest {
  labels?: Record<string, string>;
  states?: string[];
}
export interface ListContainersResponse {
  containers: Container[];
}
export interface StatsRequest {
  name?: string;
}
export interface StatsResponse {
  cpuUsageNanos: number;
  memoryUsageBytes: number;
  memoryWorkingSetBytes: number;
  memoryLimitBytes: number;
  pids: number;
  networkRxBytes: number;
  networkTxBytes: number;
  oomKills: number;
}
export interface LogsRequest {
  name?: string;
  follow?: boolean;
  tail?: number;
  since?: string;
  stdout?: boolean;
  stderr?: boolean;
}
export interface LogsResponse {
  stream: string;
  time: string;
  line: Buffer;
  partial: boolean;
}
export interface EventsRequest {
  names?: string[];
}
export interface Event {
  type: string;
  name: string;
  id: string;
  time: string;
  exitCode: number;
  signal: number;
}

// ---------------------------------------------------------------- exec

export interface ExecStart {
  container?: string;
  args?: string[];
  env?: string[];
  cwd?: string;
  user?: string;
  tty?: boolean;
  rows?: number;
  cols?: number;
  idleTimeoutSeconds?: number;
}
export interface ExecAttach {
  sessionId?: string;
  offset?: number;
}
export interface Resize {
  rows?: number;
  cols?: number;
}
export interface ExecRequest {
  start?: ExecStart;
  attach?: ExecAttach;
  stdin?: Buffer;
  resize?: Resize;
  signal?: string;
  closeStdin?: boolean;
  /** Which of the oneof fields is set (as delivered). */
  msg?: 'start' | 'attach' | 'stdin' | 'resize' | 'signal' | 'closeStdin';
}
export interface ExecOutput {
  stream: 'stdout' | 'stderr';
  data: Buffer;
  offset: number;
}
export interface ExecExit {
  code: number;
  signal: number;
}
export interface ExecResponse {
  sessionId?: string;
  output?: ExecOutput;
  gapUntil?: number;
  exit?: ExecExit;
  msg?: 'sessionId' | 'output' | 'gapUntil' | 'exit';
}
export interface ListSessionsRequest {
  container?: string;
}
export interface Session {
  id: string;
  container: string;
  args: string[];
  tty: boolean;
  state: 'running' | 'exited';
  attachedClients: number;
  startedAt: string;
  lastActivity: string;
  exit: ExecExit | null;
}
export interface ListSessionsResponse {
  sessions: Session[];
}

export interface PortForwardStart {
  container?: string;
  port?: number;
}
export interface PortForwardRequest {
  start?: PortForwardStart;
  data?: Buffer;
  closeWrite?: boolean;
}
export interface PortForwardResponse {
  connected?: boolean;
  data?: Buffer;
  closeWrite?: boolean;
}
