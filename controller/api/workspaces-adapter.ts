// lxr.controller.v1.Workspaces over WorkspaceService; logs and sessions
// through the exec proxy.
import type * as grpc from '@grpc/grpc-js';
import type { ListSessionsRequest, ListSessionsResponse } from '../../proto/shared/api-types.js';
import type * as C from '../../proto/shared/controller-types.js';
import { unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import { listSessions, logsProxy, type Resolve } from '../exec/exec-proxy.js';
import type { WorkspaceService } from '../workspaces/workspace-service.js';

export function workspacesHandlers(ctx: AdapterContext, ws: WorkspaceService, resolve: Resolve): grpc.UntypedServiceImplementation {
  return {
    Create: unary<C.CreateWorkspaceRequest, C.CreateWorkspaceResponse>(ctx, 'Workspaces.Create', async (req) => ws.create(req.spec, !!req.wait)),
    Get: unary<C.WorkspaceNameRequest, C.WorkspaceResponse>(ctx, 'Workspaces.Get', async (req) => ({ workspace: ws.get(req.name ?? '') })),
    List: unary<C.ListWorkspacesRequest, C.ListWorkspacesResponse>(ctx, 'Workspaces.List', async (req) => ({ workspaces: ws.list({ ...(req.host ? { host: req.host } : {}), ...(req.state ? { state: req.state } : {}) }) })),
    Start: unary<C.WorkspaceNameRequest, C.WorkspaceResponse>(ctx, 'Workspaces.Start', async (req) => ({ workspace: await ws.start(req.name ?? '') })),
    Stop: unary<C.StopWorkspaceRequest, C.WorkspaceResponse>(ctx, 'Workspaces.Stop', async (req) => ({ workspace: await ws.stop(req.name ?? '', req.graceSeconds ?? 0) })),
    Delete: unary<C.WorkspaceNameRequest, C.DeleteWorkspaceResponse>(ctx, 'Workspaces.Delete', async (req) => {
      await ws.delete(req.name ?? '');
      return {};
    }),
    Logs: logsProxy(ctx, resolve),
    ListSessions: unary<ListSessionsRequest, ListSessionsResponse>(ctx, 'Workspaces.ListSessions', async (req) => listSessions(resolve, req)),
  };
}
