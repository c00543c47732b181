// The gate in front of every call on a TCP port: a server interceptor that
// learns who is calling (from the TLS client certificate or a bearer token)
// and whether that caller may call this method, before any handler runs.
// Unix sockets (root-only) have no interceptor. A refusal is one status
// from the error catalogue: UNAUTHENTICATED for a missing or bad
// credential, PERMISSION_DENIED for a good one that may not do this.
import { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { AuthContext } from '@grpc/grpc-js/build/src/auth-context.js';
import { LxrError } from './errors.js';
import { toStatus } from './grpc-errors.js';
import type { Logger } from './log.js';
import { describeIdentity, type CertInfo, type Identity, type Role } from './cert-info.js';

export interface CallAuth {
  /** The client certificate, DER, when TLS carried one. */
  cert?: Buffer;
  /** The `authorization` metadata. */
  authorization?: string;
}

/**
 * `authenticate` names the caller (or null when no credential came) and
 * throws for a bad credential; `allowed` says whether that caller may call
 * the method (full path, e.g. /lxr.controller.v1.Hosts/Register).
 */
export interface AuthPolicy {
  authenticate(a: CallAuth): CertInfo | null;
  /** true, or why not: a string (UNAUTHENTICATED without a caller, else PERMISSION_DENIED), or the error itself. */
  allowed(method: string, who: CertInfo | null): true | string | LxrError;
}

/** Metadata the gate sets on every call it lets through (after dropping any the client sent). */
const PEER_KEY = 'lxr-peer';

/**
 * The client certificate of a TLS call. grpc-js's getAuthContext() shows
 * only certificates TLS accepted; one of another CA or out of its lifetime
 * is read from the TLS socket itself, so the refusal can say what is wrong
 * with it (it is checked here all the same, never trusted).
 */
function peerCert(call: { getAuthContext(): AuthContext | null }): Buffer | undefined {
  const authorized = call.getAuthContext()?.sslPeerCertificate?.raw;
  if (authorized) return authorized;
  const socket = (call as { stream?: { session?: { socket?: unknown } } }).stream?.session?.socket;
  const raw = socket instanceof TLSSocket ? socket.getPeerCertificate()?.raw : undefined;
  return raw && raw.length ? raw : undefined;
}

export function callAuth(cert: Buffer | undefined, md: grpc.Metadata): CallAuth {
  const authorization = md.get('authorization')[0];
  return { ...(cert ? { cert } : {}), ...(typeof authorization === 'string' ? { authorization } : {}) };
}

/** Who called, as the gate found: `local` for the unix socket (root; no gate there). */
export type Caller = { local: true } | { local: false; who: (Identity & { serial: string }) | null };

export function callerOf(call: { metadata: grpc.Metadata }): Caller {
  const v = call.metadata.get(PEER_KEY)[0];
  if (typeof v !== 'string') return { local: true };
  const m = /^(controller|host|operator)\/([^/]*)\/([0-9a-f]*)$/.exec(v);
  return { local: false, who: m ? { role: m[1] as Role, name: m[2]!, serial: m[3]! } : null };
}

export function authInterceptor(policy: AuthPolicy, log: Logger): grpc.ServerInterceptor {
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (md, mdNext) => {
            let verdict: true | LxrError;
            let who: CertInfo | null = null;
            try {
              who = policy.authenticate(callAuth(peerCert(call), md));
              const ok = policy.allowed(method.path, who);
              verdict = ok === true || ok instanceof LxrError ? ok : new LxrError(who ? 'LXR_PERMISSION_DENIED' : 'LXR_UNAUTHENTICATED', ok);
            } catch (e) {
              verdict = e instanceof LxrError ? e : new LxrError('LXR_UNAUTHENTICATED', `the credential cannot be checked: ${(e as Error).message}`);
            }
            if (verdict === true) {
              md.remove(PEER_KEY);
              md.set(PEER_KEY, who ? `${who.role}/${who.name}/${who.serial}` : '-');
              mdNext(md);
              return;
            }
            log.warn({ rpc: method.path, peer: call.getPeer(), reason: verdict.reason, err: verdict.message }, 'call refused');
            const s = toStatus(verdict);
            call.sendStatus({ code: s.code, details: s.details, metadata: s.metadata });
          },
        }),
    });
}

/** A refusal's words: who may call this, and who called. */
export const onlyFor = (what: string, who: CertInfo | null): string => (who ? `${describeIdentity(who)} may not call this: it is for ${what}` : `this call needs a credential (${what}): a client certificate of this cluster or a token`);
