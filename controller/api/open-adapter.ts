// Workspaces.Open: a signed link to a workspace's page in the browser.
import type * as grpc from '@grpc/grpc-js';
import type * as C from '../../proto/shared/controller-types.js';
import { invalidArgument, LxrError } from '../../proto/shared/errors.js';
import { unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import { checkDnsLabel } from '../../proto/shared/names.js';
import type { WebLinks } from '../web/web-links.js';

/** How long a link may wait before it is opened. */
export const LINK_TTL = 300;

/** The pages of a workspace, by what their path is under /w/NAME/. */
const PAGES: Record<string, string> = { ide: '', terminal: 'terminal' };

/** `ideOf` throws NOT_FOUND for no such workspace, else gives its IDE ("" = none). */
export function openHandler(ctx: AdapterContext, o: { web: () => { address: string; links: WebLinks } | null; ideOf: (name: string) => string }): grpc.handleUnaryCall<C.OpenWorkspaceRequest, C.OpenWorkspaceResponse> {
  return unary<C.OpenWorkspaceRequest, C.OpenWorkspaceResponse>(ctx, 'Workspaces.Open', async (req) => {
    const name = checkDnsLabel(req.name, 'name');
    const ide = o.ideOf(name);
    const page = req.page || (ide ? 'ide' : 'terminal');
    if (!Object.hasOwn(PAGES, page)) throw invalidArgument('page', `${JSON.stringify(page)} is not a page of a workspace: ide or terminal`);
    if (page === 'ide' && !ide) throw invalidArgument('page', `workspace ${name} has no IDE (create it with --ide code-server); its page is terminal`);
    const web = o.web();
    if (!web) throw new LxrError('LXR_ILLEGAL_STATE', 'this controller serves no web pages: start it with --web-listen HOST:PORT');
    const now = Date.now();
    return { url: `https://${web.address}/w/${name}/${PAGES[page]}?link=${web.links.sign('link', name, LINK_TTL, now)}`, expiresAt: new Date(now + LINK_TTL * 1000).toISOString() };
  });
}
