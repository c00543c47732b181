// The one place where LXR's error catalogue meets gRPC: servers turn any
// thrown value into a status (code from the catalogue, reason and field as
// trailing metadata) exactly once, at the adapter boundary; clients turn a
// status back into an LxrError.
import * as grpc from '@grpc/grpc-js';
import { asLxrError, Code, LxrError, Reasons, type Reason } from './errors.js';

export const REASON_KEY = 'lxr-reason';
export const FIELD_KEY = 'lxr-field';

/** What grpc-js accepts as an error from a handler, and what it hands clients. */
export interface StatusError extends Error {
  code: grpc.status;
  details: string;
  metadata: grpc.Metadata;
}

/** Any thrown value -> a gRPC status error (INTERNAL, message kept, for what is not an LxrError). */
export function toStatus(e: unknown): StatusError {
  const lxr = asLxrError(e);
  const metadata = new grpc.Metadata();
  metadata.set(REASON_KEY, lxr.reason);
  if (lxr.field !== undefined) metadata.set(FIELD_KEY, lxr.field);
  const err = new Error(lxr.message) as StatusError;
  err.code = lxr.code as number as grpc.status;
  err.details = lxr.message;
  err.metadata = metadata;
  return err;
}

/** A reason for a status that carries none (a transport failure, a foreign server). */
const DEFAULT_REASON: Partial<Record<number, Reason>> = {
  [Code.INVALID_ARGUMENT]: 'LXR_INVALID_ARGUMENT',
  [Code.NOT_FOUND]: 'LXR_NOT_FOUND',
  [Code.ALREADY_EXISTS]: 'LXR_ALREADY_EXISTS',
  [Code.FAILED_PRECONDITION]: 'LXR_ILLEGAL_STATE',
  [Code.PERMISSION_DENIED]: 'LXR_PERMISSION_DENIED',
  [Code.RESOURCE_EXHAUSTED]: 'LXR_RESOURCE_EXHAUSTED',
  [Code.UNIMPLEMENTED]: 'LXR_UNSUPPORTED',
  [Code.UNAVAILABLE]: 'LXR_UNAVAILABLE',
  [Code.UNAUTHENTICATED]: 'LXR_UNAUTHENTICATED',
  [Code.CANCELLED]: 'LXR_UNAVAILABLE',
  [Code.DEADLINE_EXCEEDED]: 'LXR_UNAVAILABLE',
};

const isReason = (s: unknown): s is Reason => typeof s === 'string' && Object.prototype.hasOwnProperty.call(Reasons, s);

const first = (md: grpc.Metadata | undefined, key: string): string | undefined => {
  const v = md?.get(key)[0];
  return v === undefined ? undefined : String(v);
};

/** A client's view of a failed call: the LxrError the server threw (reason, message, field). */
export function fromStatus(err: unknown): LxrError {
  if (err instanceof LxrError) return err;
  const s = err as Partial<StatusError> | undefined;
  if (!s || typeof s.code !== 'number') return asLxrError(err);
  const sent = first(s.metadata, REASON_KEY);
  // A reason whose code disagrees with the status is not to be trusted (a proxy rewrote it).
  const reason: Reason = isReason(sent) && Reasons[sent] === s.code ? sent : (DEFAULT_REASON[s.code] ?? 'LXR_INTERNAL');
  const field = first(s.metadata, FIELD_KEY);
  const message = s.details ?? s.message ?? `gRPC status ${s.code}`;
  return new LxrError(reason, message, { cause: err, ...(field !== undefined ? { field } : {}) });
}
