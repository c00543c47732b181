// lxr.controller.v1.Trust over TrustService.
import type * as grpc from '@grpc/grpc-js';
import { callerOf } from '../../proto/shared/auth-interceptor.js';
import type * as C from '../../proto/shared/controller-types.js';
import { LxrError } from '../../proto/shared/errors.js';
import { unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import type { TrustService } from '../trust/trust-service.js';

/** `member`: a registered host's addresses (for its certificate), or null. */
export function trustHandlers(ctx: AdapterContext, trust: TrustService, member: (name: string) => { ips: string[] } | null): grpc.UntypedServiceImplementation {
  const isMember = (name: string): boolean => member(name) !== null;
  return {
    // On the unix socket (root on the controller's machine) a join needs no token.
    Join: unary<C.JoinRequest, C.CertificateResponse>(ctx, 'Trust.Join', async (req, call) => trust.join(req, isMember, callerOf(call).local)),
    Renew: unary<C.RenewRequest, C.CertificateResponse>(ctx, 'Trust.Renew', async (req, call) => {
      const c = callerOf(call);
      if (!c.local) {
        // The policy (controller-policy.ts) lets only a host's certificate call Renew over TCP.
        if (!c.who) throw new LxrError('LXR_INTERNAL', 'Renew over TCP without a certificate got past the policy');
        if (req.name && req.name !== c.who.name) throw new LxrError('LXR_PERMISSION_DENIED', `the certificate of host ${JSON.stringify(c.who.name)} cannot renew host ${JSON.stringify(req.name)}'s`);
        return trust.renew(c.who, req.csr ?? '', member);
      }
      // The unix socket: root names the host.
      if (!req.name) throw new LxrError('LXR_INVALID_ARGUMENT', 'name: required on the unix socket (the host whose certificate to renew)', { field: 'name' });
      return trust.renew({ role: 'host', name: req.name }, req.csr ?? '', member);
    }),
    CreateJoinToken: unary<C.CreateJoinTokenRequest, C.CreateJoinTokenResponse>(ctx, 'Trust.CreateJoinToken', async (req) => trust.createJoinToken(req.ttlSeconds)),
    CreateCredential: unary<C.CreateCredentialRequest, C.CreateCredentialResponse>(ctx, 'Trust.CreateCredential', async (req) => trust.createCredential(req)),
    ListCredentials: unary<Record<string, never>, C.ListCredentialsResponse>(ctx, 'Trust.ListCredentials', async () => ({ credentials: trust.listCredentials() })),
    RevokeCredential: unary<C.RevokeCredentialRequest, C.RevokeCredentialResponse>(ctx, 'Trust.RevokeCredential', async (req) => ({ revoked: await trust.revoke(req.name) })),
  };
}
