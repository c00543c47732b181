// Join tokens: lxr1.ID.SECRET.CAHASH, all hex. The controller finds the
// token by ID and checks SECRET against a hash it keeps; the joining host
// uses CAHASH (sha256 of the CA's public key) to pin the controller's CA
// before it sends anything, as kubeadm's discovery hash does.
import * as grpc from '@grpc/grpc-js';
import { TrustClient, unary } from './api.js';
import type { CreateJoinTokenResponse } from './controller-types.js';
import { LxrError } from './errors.js';

export interface JoinToken {
  id: string;
  secret: string;
  /** sha256:HEX, as spkiHash writes it. */
  caHash: string;
}

export function parseJoinToken(token: string): JoinToken {
  const m = /^lxr1\.([0-9a-f]{8})\.([0-9a-f]{32})\.([0-9a-f]{64})$/.exec(token.trim());
  if (!m) throw new LxrError('LXR_INVALID_ARGUMENT', 'the join token is malformed: it looks like lxr1.ID.SECRET.CAHASH (from lxr-controller token create)', { field: 'token' });
  return { id: m[1]!, secret: m[2]!, caHash: `sha256:${m[3]!}` };
}

/** A new join token, asked of the controller on its root-only unix socket (lxr-controller token create, the lab). */
export async function requestJoinToken(socket: string, ttlSeconds = 0): Promise<CreateJoinTokenResponse> {
  const c = new TrustClient(`unix://${socket}`, grpc.credentials.createInsecure());
  try {
    return await unary(c, c.CreateJoinToken, { ttlSeconds }, { deadline: Date.now() + 10_000 });
  } finally {
    c.close();
  }
}

export const formatJoinToken = (t: JoinToken): string => `lxr1.${t.id}.${t.secret}.${t.caHash.slice('sha256:'.length)}`;
