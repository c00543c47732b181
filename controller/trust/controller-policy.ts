// Which caller may call what on the controller's TCP port. Hosts (their
// certificate names them) register, send heartbeats and renew; people
// (operators, by certificate or token) use the rest of the API; a joining
// machine has no credential yet and may only call Trust.Join. Managing
// credentials is served on the unix socket alone, which has no policy:
// whoever can open it is root on the controller's machine.
import { onlyFor, type AuthPolicy } from '../../proto/shared/auth-interceptor.js';
import { LxrError } from '../../proto/shared/errors.js';
import type { TrustService } from './trust-service.js';

const TRUST = '/lxr.controller.v1.Trust/';
const HOST_METHODS = new Set(['/lxr.controller.v1.Hosts/Register', '/lxr.controller.v1.Hosts/Heartbeat', `${TRUST}Renew`]);
const LOCAL_ONLY = new Set([`${TRUST}CreateJoinToken`, `${TRUST}CreateCredential`, `${TRUST}ListCredentials`, `${TRUST}RevokeCredential`]);

export function controllerPolicy(trust: TrustService): AuthPolicy {
  return {
    authenticate: (a) => trust.authenticate(a.cert, a.authorization),
    allowed(method, who) {
      if (method === `${TRUST}Join`) return true;
      if (LOCAL_ONLY.has(method)) return new LxrError('LXR_PERMISSION_DENIED', 'credentials and join tokens are managed only on the controller\'s unix socket (as root on its machine)');
      if (!who) return onlyFor('hosts and people', null);
      if (method.startsWith('/grpc.health.v1.Health/')) return true;
      if (HOST_METHODS.has(method)) return who.role === 'host' ? true : onlyFor('hosts', who);
      return who.role === 'operator' ? true : onlyFor('people (operator credentials)', who);
    },
  };
}
