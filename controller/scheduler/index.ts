// The scheduler's public face: the controller imports from here only.
export type { Decision, HostReason, HostView, Policy, Rejection, ScheduleRequest } from './types.js';
export { FILTERS, architecture, enoughCpu, enoughMemory, labels, normalizeArch, notCordoned, ready, whyNot } from './filters.js';
export type { Filter } from './filters.js';
export { formatBytes, formatCpus } from './format.js';
export { compareHosts, loadAfter, pickHost } from './score.js';
export { decisionError, schedule, validateRequest } from './schedule.js';
export { Reservations } from './reservations.js';
export type { Reservation } from './reservations.js';
