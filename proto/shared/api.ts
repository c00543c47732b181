// The loaded protobuf API: lxr.agent.v1, lxr.controller.v1 and
// grpc.health.v1, read at run time from the .proto files (proto-load.ts).
// The agent, the controller and lxrctl all import this module, so every side
// reads the same contract with the same conversions.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { execResponseSerializer } from './exec-wire.js';
import { loadRoot, serviceDefinition } from './proto-load.js';
import type * as T from './api-types.js';
import type * as C from './controller-types.js';

export type * from './api-types.js';
export type * from './controller-types.js';

/** The repository root: the nearest directory up from here whose package.json is named "lxr". */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'lxr') return dir;
      } catch {
        // Not ours; keep walking up.
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the lxr repository root above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** Where the .proto files are (proto/ at the repository root, not under dist). */
export const PROTO_DIR = path.join(repoRoot(), 'proto');

const PROTO_FILES = ['lxr/agent/v1/agent.proto', 'lxr/controller/v1/controller.proto', 'grpc/health/v1/health.proto'];
const root = loadRoot(PROTO_DIR, PROTO_FILES, path.join(repoRoot(), 'dist', 'proto-cache.json'));
const clientOf = (fullName: string): grpc.ServiceClientConstructor => grpc.makeGenericClientConstructor(serviceDefinition(root, fullName), fullName.split('.').pop()!);

/** Full service names, as health checks and reflection name them. */
export const ServiceNames = {
  Host: 'lxr.agent.v1.Host',
  Images: 'lxr.agent.v1.Images',
  Containers: 'lxr.agent.v1.Containers',
  Exec: 'lxr.agent.v1.Exec',
  Health: 'grpc.health.v1.Health',
  ClusterHosts: 'lxr.controller.v1.Hosts',
  ClusterWorkspaces: 'lxr.controller.v1.Workspaces',
  ClusterExec: 'lxr.controller.v1.Exec',
  ClusterImages: 'lxr.controller.v1.Images',
  Trust: 'lxr.controller.v1.Trust',
} as const;

// ---------------------------------------------------------------- clients

export type UnaryCallback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;

/** A unary method of a generated client (the overloads grpc-js gives it). */
export interface UnaryMethod<Req, Res> {
  (req: Req, cb: UnaryCallback<Res>): grpc.ClientUnaryCall;
  (req: Req, md: grpc.Metadata, cb: UnaryCallback<Res>): grpc.ClientUnaryCall;
  (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: UnaryCallback<Res>): grpc.ClientUnaryCall;
}

export type ServerStreamMethod<Req, Res> = (req: Req, md?: grpc.Metadata, opts?: grpc.CallOptions) => grpc.ClientReadableStream<Res>;

/** A client-streaming method: write the requests, end(), and the callback gets the one response. */
export interface ClientStreamMethod<Req, Res> {
  (cb: UnaryCallback<Res>): grpc.ClientWritableStream<Req>;
  (md: grpc.Metadata, cb: UnaryCallback<Res>): grpc.ClientWritableStream<Req>;
  (md: grpc.Metadata, opts: grpc.CallOptions, cb: UnaryCallback<Res>): grpc.ClientWritableStream<Req>;
}

export interface HostClient extends grpc.Client {
  GetInfo: UnaryMethod<T.GetInfoRequest, T.GetInfoResponse>;
  SetPeers: UnaryMethod<T.SetPeersRequest, T.SetPeersResponse>;
}

export interface ImagesClient extends grpc.Client {
  Pull: ServerStreamMethod<T.PullRequest, T.PullResponse>;
  List: UnaryMethod<T.ListImagesRequest, T.ListImagesResponse>;
  Inspect: UnaryMethod<T.InspectImageRequest, T.InspectImageResponse>;
  Remove: UnaryMethod<T.RemoveImageRequest, T.RemoveImageResponse>;
  Import: UnaryMethod<T.ImportImageRequest, T.ImportImageResponse>;
  Load: ClientStreamMethod<T.LoadImageRequest, T.ImportImageResponse>;
}

export interface ContainersClient extends grpc.Client {
  Create: UnaryMethod<T.CreateContainerRequest, T.CreateContainerResponse>;
  Start: UnaryMethod<T.StartContainerRequest, T.StartContainerResponse>;
  Stop: UnaryMethod<T.StopContainerRequest, T.StopContainerResponse>;
  Kill: UnaryMethod<T.KillContainerRequest, T.KillContainerResponse>;
  Remove: UnaryMethod<T.RemoveContainerRequest, T.RemoveContainerResponse>;
  Get: UnaryMethod<T.GetContainerRequest, T.GetContainerResponse>;
  List: UnaryMethod<T.ListContainersRequest, T.ListContainersResponse>;
  Stats: UnaryMethod<T.StatsRequest, T.StatsResponse>;
  Logs: ServerStreamMethod<T.LogsRequest, T.LogsResponse>;
  Events: ServerStreamMethod<T.EventsRequest, T.Event>;
  PortForward: BidiStreamMethod<T.PortForwardRequest, T.PortForwardResponse>;
}

export type BidiStreamMethod<Req, Res> = (md?: grpc.Metadata, opts?: grpc.CallOptions) => grpc.ClientDuplexStream<Req, Res>;

export interface ExecClient extends grpc.Client {
  Exec: BidiStreamMethod<T.ExecRequest, T.ExecResponse>;
  Attach: BidiStreamMethod<T.ExecRequest, T.ExecResponse>;
  ListSessions: UnaryMethod<T.ListSessionsRequest, T.ListSessionsResponse>;
}

export interface HealthClient extends grpc.Client {
  Check: UnaryMethod<T.HealthCheckRequest, T.HealthCheckResponse>;
  Watch: ServerStreamMethod<T.HealthCheckRequest, T.HealthCheckResponse>;
}

export interface ClusterHostsClient extends grpc.Client {
  Register: UnaryMethod<C.RegisterHostRequest, C.RegisterHostResponse>;
  Heartbeat: UnaryMethod<C.HeartbeatRequest, C.HeartbeatResponse>;
  List: UnaryMethod<C.ListHostsRequest, C.ListHostsResponse>;
  Get: UnaryMethod<C.HostNameRequest, C.HostResponse>;
  Cordon: UnaryMethod<C.HostNameRequest, C.HostResponse>;
  Uncordon: UnaryMethod<C.HostNameRequest, C.HostResponse>;
  Drain: UnaryMethod<C.HostNameRequest, C.DrainHostResponse>;
  Remove: UnaryMethod<C.RemoveHostRequest, C.RemoveHostResponse>;
}

export interface WorkspacesClient extends grpc.Client {
  Create: UnaryMethod<C.CreateWorkspaceRequest, C.CreateWorkspaceResponse>;
  Get: UnaryMethod<C.WorkspaceNameRequest, C.WorkspaceResponse>;
  List: UnaryMethod<C.ListWorkspacesRequest, C.ListWorkspacesResponse>;
  Start: UnaryMethod<C.WorkspaceNameRequest, C.WorkspaceResponse>;
  Stop: UnaryMethod<C.StopWorkspaceRequest, C.WorkspaceResponse>;
  Delete: UnaryMethod<C.WorkspaceNameRequest, C.DeleteWorkspaceResponse>;
  Logs: ServerStreamMethod<T.LogsRequest, T.LogsResponse>;
  ListSessions: UnaryMethod<T.ListSessionsRequest, T.ListSessionsResponse>;
  Open: UnaryMethod<C.OpenWorkspaceRequest, C.OpenWorkspaceResponse>;
  PortForward: BidiStreamMethod<T.PortForwardRequest, T.PortForwardResponse>;
}

export interface ClusterImagesClient extends grpc.Client {
  Pull: ServerStreamMethod<C.ClusterPullImageRequest, C.ClusterPullImageResponse>;
  List: UnaryMethod<C.ClusterListImagesRequest, C.ClusterListImagesResponse>;
  Remove: UnaryMethod<C.ClusterRemoveImageRequest, C.ClusterRemoveImageResponse>;
  Import: ClientStreamMethod<C.ClusterImportImageRequest, C.ClusterImportImageResponse>;
}

export interface TrustClient extends grpc.Client {
  Join: UnaryMethod<C.JoinRequest, C.CertificateResponse>;
  Renew: UnaryMethod<C.RenewRequest, C.CertificateResponse>;
  CreateJoinToken: UnaryMethod<C.CreateJoinTokenRequest, C.CreateJoinTokenResponse>;
  CreateCredential: UnaryMethod<C.CreateCredentialRequest, C.CreateCredentialResponse>;
  ListCredentials: UnaryMethod<Record<string, never>, C.ListCredentialsResponse>;
  RevokeCredential: UnaryMethod<C.RevokeCredentialRequest, C.RevokeCredentialResponse>;
}

type ClientCtor<C> = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => C;

export const HostClient = clientOf('lxr.agent.v1.Host') as unknown as ClientCtor<HostClient> & grpc.ServiceClientConstructor;
export const ImagesClient = clientOf('lxr.agent.v1.Images') as unknown as ClientCtor<ImagesClient> & grpc.ServiceClientConstructor;
export const ContainersClient = clientOf('lxr.agent.v1.Containers') as unknown as ClientCtor<ContainersClient> & grpc.ServiceClientConstructor;
export const ExecClient = clientOf('lxr.agent.v1.Exec') as unknown as ClientCtor<ExecClient> & grpc.ServiceClientConstructor;
export const ClusterHostsClient = clientOf('lxr.controller.v1.Hosts') as unknown as ClientCtor<ClusterHostsClient> & grpc.ServiceClientConstructor;
export const WorkspacesClient = clientOf('lxr.controller.v1.Workspaces') as unknown as ClientCtor<WorkspacesClient> & grpc.ServiceClientConstructor;
/** The controller's Exec service: the agent's messages, workspaces for containers. */
export const ClusterExecClient = clientOf('lxr.controller.v1.Exec') as unknown as ClientCtor<ExecClient> & grpc.ServiceClientConstructor;
export const ClusterImagesClient = clientOf('lxr.controller.v1.Images') as unknown as ClientCtor<ClusterImagesClient> & grpc.ServiceClientConstructor;
export const TrustClient = clientOf('lxr.controller.v1.Trust') as unknown as ClientCtor<TrustClient> & grpc.ServiceClientConstructor;
export const HealthClient = clientOf('grpc.health.v1.Health') as unknown as ClientCtor<HealthClient> & grpc.ServiceClientConstructor;

/**
 * Channel options every LXR client uses: an 8 MiB HTTP/2 receive window
 * (grpc-js's default of 64 KiB caps a stream at a few hundred MB/s, which
 * exec output outruns), and keepalive pings so a dead peer is noticed.
 */
export const CLIENT_OPTIONS: grpc.ClientOptions = {
  'grpc-node.flow_control_window': 8 << 20,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
};

// Servers write exec output through the allocation-free encoder (exec-wire.ts).
for (const svc of [ExecClient.service, ClusterExecClient.service]) {
  for (const m of [svc.Exec, svc.Attach]) m!.responseSerialize = execResponseSerializer(m!.responseSerialize as (v: unknown) => Buffer) as grpc.serialize<unknown>;
}

/** Service definitions for grpc.Server.addService. */
export const services = {
  Host: HostClient.service,
  Images: ImagesClient.service,
  Containers: ContainersClient.service,
  Exec: ExecClient.service,
  Health: HealthClient.service,
};

/** Service definitions of the controller. */
export const controllerServices = {
  Hosts: ClusterHostsClient.service,
  Workspaces: WorkspacesClient.service,
  Exec: ClusterExecClient.service,
  Images: ClusterImagesClient.service,
  Trust: TrustClient.service,
  Health: HealthClient.service,
};

/** Calls a unary method and resolves with its response (rejects with the grpc ServiceError). */
export function unary<Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, req: Req, opts: grpc.CallOptions = {}, md = new grpc.Metadata()): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method.call(client, req, md, opts, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}
