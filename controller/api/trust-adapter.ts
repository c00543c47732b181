// lxr.controller.v1.Trust over TrustService.
import type * as grpc from '@grpc/grpc-js';
import { callerOf } from '../../proto/shared/auth-interceptor.js';
import type * as C from '../../proto/shared/controller-types.js';
import { LxrError } from '../../proto/shared/errors.js';
import { unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import type { TrustService } from '../trust/trust-service.js';

export function trustHandlers(ctx: AdapterContext, trust: TrustService, isMember: (name: string) => boolean): grpc.UntypedServiceImplementation {
  return {
    // On the unix socket (root on the controller's machine) a join needs no token.
    Join: unary<C.JoinRequest, C.CertificateResponse>(ctx, 'Trust.Join', async (req, call) => trust.join(req, isMember, callerOf(call).local)),
    Renew: unary<C.RenewRequest, C.CertificateResponse>(ctx, 'Trust.Renew', async (req, call) => {
      const c = callerOf(call);
      const who = c.local ? null : c.who;
      if (!c.local) {
        if (!who) throw new LxrError('LXR_UNAUTHENTICATED', 'Renew renews the certificate the call is made with: none came');
        if (req.name && req.name !== who.name) throw new LxrError('LXR_PERMISSION_DENIED', `the certificate of host ${JSON.stringify(who.name)} cannot renew host ${JSON.stringify(req.name)}'s`);
        return trust.renew({ ...who, serial: '', notBefore: new Date(), notAfter: new Date() }, req.csr ?? '');
      }
      // The unix socket: root names the host.
      if (!req.name || !isMember(req.name)) throw new LxrError('LXR_NOT_FOUND', `no host ${JSON.stringify(req.name ?? '')} to renew the certificate of`, { field: 'name' });
      return trust.renew({ role: 'host', name: req.name, serial: '', notBefore: new Date(), notAfter: new Date() }, req.csr ?? '');
    }),
    CreateJoinToken: unary<C.CreateJoinTokenRequest, C.CreateJoinTokenResponse>(ctx, 'Trust.CreateJoinToken', async (req) => trust.createJoinToken(req.ttlSeconds)),
    CreateCredential: unary<C.CreateCredentialRequest, C.CreateCredentialResponse>(ctx, 'Trust.CreateCredential', async (req) => trust.createCredential(req)),
    ListCredentials: unary<Record<string, never>, C.ListCredentialsResponse>(ctx, 'Trust.ListCredentials', async () => ({ credentials: trust.listCredentials() })),
    RevokeCredential: unary<C.RevokeCredentialRequest, C.RevokeCredentialResponse>(ctx, 'Trust.RevokeCredential', async (req) => ({ revoked: await trust.revoke(req.name) })),
  };
}
