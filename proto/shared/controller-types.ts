// Hand-written TypeScript shapes of the lxr.controller.v1 messages as
// @grpc/proto-loader delivers them (same conventions as api-types.ts:
// camelCase, 64-bit integers as numbers, request fields optional).
import type { HostUsage, Image, LayerProgress, Platform, PortMapping } from './api-types.js';

// --------------------------------------------------------------- hosts

export interface RegisterHostRequest {
  name?: string;
  address?: string;
  metricsAddress?: string;
  cpus?: number;
  memoryBytes?: number;
  architecture?: string;
  labels?: Record<string, string>;
  agentVersion?: string;
  subnet?: string;
}
export interface ClusterHost {
  name: string;
  address: string;
  metricsAddress: string;
  subnet: string;
  state: 'Ready' | 'NotReady';
  cordoned: boolean;
  cpus: number;
  memoryBytes: number;
  architecture: string;
  labels: Record<string, string>;
  agentVersion: string;
  registeredAt: string;
  lastHeartbeat: string;
  reservedCpus: number;
  reservedMemoryBytes: number;
  workspaces: number;
  usage: HostUsage | null;
}
export interface RegisterHostResponse {
  host: ClusterHost | null;
  pool: string;
  heartbeatSeconds: number;
}
export interface HeartbeatRequest {
  name?: string;
  usage?: Partial<HostUsage> | null;
}
export type HeartbeatResponse = Record<string, never>;
export type ListHostsRequest = Record<string, never>;
export interface ListHostsResponse {
  hosts: ClusterHost[];
}
export interface HostNameRequest {
  name?: string;
}
export interface HostResponse {
  host: ClusterHost | null;
}
export interface DrainHostResponse extends HostResponse {
  stopped: string[];
}
export interface RemoveHostRequest {
  name?: string;
  force?: boolean;
}
export type RemoveHostResponse = Record<string, never>;

// ---------------------------------------------------------- workspaces

export interface WorkspaceSpec {
  name: string;
  image: string;
  host: string;
  cpus: number;
  memoryBytes: number;
  env: string[];
  ports: PortMapping[];
  labels: Record<string, string>;
  command: string[];
  hostSelector: Record<string, string>;
  architecture: string;
  /** "code-server" or none (absent or ""). */
  ide?: string;
}
export type WorkspaceState = 'Pending' | 'Creating' | 'Running' | 'Stopped' | 'Failed' | 'Unknown';
export interface Workspace {
  spec: WorkspaceSpec | null;
  uid: string;
  host: string;
  state: WorkspaceState;
  reason: string;
  desired: 'running' | 'stopped';
  address: string;
  createdAt: string;
  startedAt: string;
  exitCode: number;
  revision: number;
  /** The catalogue reason (LxrError.reason) behind a Failed state; '' otherwise. */
  reasonCode: string;
  lastActivity?: string;
  lastActivityKind?: string;
}
export interface CreateWorkspaceRequest {
  spec?: Partial<WorkspaceSpec> | null;
  wait?: boolean;
}
export interface CreateWorkspaceResponse {
  workspace: Workspace | null;
  created: boolean;
}
export interface WorkspaceNameRequest {
  name?: string;
}
export interface WorkspaceResponse {
  workspace: Workspace | null;
}
export interface ListWorkspacesRequest {
  host?: string;
  state?: string;
}
export interface ListWorkspacesResponse {
  workspaces: Workspace[];
}
export interface StopWorkspaceRequest {
  name?: string;
  graceSeconds?: number;
}
export type DeleteWorkspaceResponse = Record<string, never>;

// -------------------------------------------------------------- images
// Named Cluster* where the agent's API has a message of the same name.

export interface ClusterPullImageRequest {
  image?: string;
  hosts?: string[];
  platform?: Partial<Platform> | null;
}
export interface ClusterPullImageResponse {
  host: string;
  progress?: LayerProgress | null;
  image?: Image | null;
  /** proto-loader's oneof marker. */
  event?: 'progress' | 'image';
}
export interface ClusterListImagesRequest {
  host?: string;
}
export interface HostImage {
  host: string;
  image: Image | null;
}
export interface ClusterListImagesResponse {
  images: HostImage[];
  unreachable: string[];
}
export interface ClusterRemoveImageRequest {
  image?: string;
  hosts?: string[];
}
export interface HostImageRemoval {
  host: string;
  untagged: string[];
  deleted: string;
}
export interface ClusterRemoveImageResponse {
  removed: HostImageRemoval[];
}
export interface ImportImageHeader {
  hosts?: string[];
  repository?: string;
}
export interface ClusterImportImageRequest {
  header?: ImportImageHeader | null;
  data?: Buffer;
}
export interface HostImages {
  host: string;
  images: Image[];
}
export interface ClusterImportImageResponse {
  imported: HostImages[];
}

export interface JoinRequest {
  token?: string;
  name?: string;
  csr?: string;
  addresses?: string[];
}
export interface RenewRequest {
  csr?: string;
  name?: string;
}
export interface CertificateResponse {
  certificate: string;
  ca: string;
  notAfter: string;
}
export interface CreateJoinTokenRequest {
  ttlSeconds?: number;
}
export interface CreateJoinTokenResponse {
  token: string;
  id: string;
  expiresAt: string;
}
export interface CreateCredentialRequest {
  name?: string;
  ttlSeconds?: number;
  csr?: string;
}
export interface CreateCredentialResponse {
  token: string;
  certificate: string;
  ca: string;
  id: string;
  expiresAt: string;
}
export interface Credential {
  id: string;
  name: string;
  kind: 'token' | 'certificate';
  createdAt: string;
  expiresAt: string;
  revoked: boolean;
}
export interface ListCredentialsResponse {
  credentials: Credential[];
}
export interface RevokeCredentialRequest {
  name?: string;
}
export interface RevokeCredentialResponse {
  revoked: Credential[];
}
export interface OpenWorkspaceRequest {
  name?: string;
  page?: string;
}
export interface OpenWorkspaceResponse {
  url: string;
  expiresAt: string;
}
