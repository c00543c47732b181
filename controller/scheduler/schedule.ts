// The placement decision: filters, then a score, over a snapshot of hosts.
// Pure (no clock, no store, never mutates its input) so it is tested with
// tables and the controller serialises only the reserve step around it.
import { LxrError, invalidArgument, notFound } from '../../proto/shared/errors.js';
import { whyNot } from './filters.js';
import { pickHost } from './score.js';
import type { Decision, HostReason, HostView, Policy, Rejection, ScheduleRequest } from './types.js';

const byName = (a: { host: string }, b: { host: string }): number => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0);

/** Throws LXR_INVALID_ARGUMENT naming the field when the request cannot be scheduled at all. */
export function validateRequest(req: ScheduleRequest): void {
  if (typeof req.cpus !== 'number' || !Number.isFinite(req.cpus) || req.cpus < 0) {
    throw invalidArgument('cpus', `must be a finite number >= 0, got ${String(req.cpus)}`);
  }
  if (typeof req.memoryBytes !== 'number' || !Number.isFinite(req.memoryBytes) || req.memoryBytes < 0) {
    throw invalidArgument('memory', `must be a finite number of bytes >= 0, got ${String(req.memoryBytes)}`);
  }
  for (const [k, v] of Object.entries(req.selector ?? {})) {
    if (k === '') throw invalidArgument('selector', 'label keys must not be empty');
    if (typeof v !== 'string') throw invalidArgument(`selector.${k}`, 'must be a string');
  }
}

/**
 * Picks a host for the request, or says for each host why it cannot take it.
 * A pinned host is still validated. Throws only for an invalid request.
 */
export function schedule(hosts: readonly HostView[], req: ScheduleRequest, policy: Policy = 'spread'): Decision {
  validateRequest(req);
  if (req.host) {
    const h = hosts.find((x) => x.name === req.host);
    if (h === undefined) return { ok: false, pinned: req.host, unknownHost: true, reasons: [] };
    const reason = whyNot(h, req);
    return reason === null ? { ok: true, host: h.name } : { ok: false, pinned: h.name, reasons: [{ host: h.name, reason }] };
  }
  const fit: HostView[] = [];
  const reasons: HostReason[] = [];
  for (const h of hosts) {
    const reason = whyNot(h, req);
    if (reason === null) fit.push(h);
    else reasons.push({ host: h.name, reason });
  }
  const best = pickHost(fit, req, policy);
  if (best !== undefined) return { ok: true, host: best.name };
  return { ok: false, reasons: reasons.sort(byName) };
}

/** The error a create fails with when scheduling said no. */
export function decisionError(d: Rejection): LxrError {
  if (d.pinned !== undefined) {
    if (d.unknownHost) return notFound('host', d.pinned);
    const why = d.reasons.map((r) => r.reason).join('; ') || 'unknown reason';
    return new LxrError('LXR_HOST_UNSCHEDULABLE', `host ${d.pinned} cannot take the workspace: ${why}`);
  }
  if (d.reasons.length === 0) return new LxrError('LXR_NO_HOST_FITS', 'no host can take the workspace: no hosts are registered');
  const why = d.reasons.map((r) => `${r.host}: ${r.reason}`).join('; ');
  return new LxrError('LXR_NO_HOST_FITS', `no host can take the workspace: ${why}`);
}
