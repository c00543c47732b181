// What a workspace request must look like before anything is scheduled or
// stored: names are DNS labels (they become container names, hostnames and
// URL paths), and every bad field is named in the error.
import { checkIde } from '../../proto/shared/ide.js';
import { invalidArgument } from '../../proto/shared/errors.js';
import { checkDnsLabel } from '../../proto/shared/names.js';
import type { PortMapping } from '../../proto/shared/api-types.js';
import type { WorkspaceSpec } from '../../proto/shared/controller-types.js';

const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9_./-]{0,126}[A-Za-z0-9])?$/;

export { checkDnsLabel };

function checkLabels(labels: Record<string, string> | undefined, field: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (!LABEL_KEY.test(k)) throw invalidArgument(field, `label key ${JSON.stringify(k)}: 1-128 letters, digits, '_', '.', '/', '-'`);
    if (k.startsWith('lxr.')) throw invalidArgument(field, `label key ${JSON.stringify(k)}: the lxr. prefix is reserved`);
    if (typeof v !== 'string' || v.length > 256 || /[\0-\x1f\x7f]/.test(v)) throw invalidArgument(field, `label ${k}: value must be at most 256 printable characters`);
    out[k] = v;
  }
  return out;
}

function checkPorts(ports: PortMapping[] | undefined): PortMapping[] {
  const seen = new Set<string>();
  return (ports ?? []).map((p, i) => {
    const f = `spec.ports[${i}]`;
    const proto = p.protocol || 'tcp';
    if (proto !== 'tcp' && proto !== 'udp') throw invalidArgument(`${f}.protocol`, `${JSON.stringify(p.protocol)}: tcp or udp`);
    for (const k of ['hostPort', 'containerPort'] as const) {
      if (!Number.isInteger(p[k]) || p[k] < 1 || p[k] > 65535) throw invalidArgument(`${f}.${k === 'hostPort' ? 'host_port' : 'container_port'}`, `${p[k]} is not a port (1-65535)`);
    }
    const key = `${p.hostPort}/${proto}`;
    if (seen.has(key)) throw invalidArgument(`${f}.host_port`, `${key} is published twice`);
    seen.add(key);
    return { hostPort: p.hostPort, containerPort: p.containerPort, protocol: proto };
  });
}

/** The spec with defaults filled in (what is stored and compared for idempotency). */
export function normalizeSpec(s: Partial<WorkspaceSpec> | null | undefined): WorkspaceSpec {
  if (!s) throw invalidArgument('spec', 'required');
  const name = checkDnsLabel(s.name, 'spec.name');
  if (!s.image || /\s/.test(s.image)) throw invalidArgument('spec.image', s.image ? `${JSON.stringify(s.image)} is not an image reference` : 'required');
  if (s.host) checkDnsLabel(s.host, 'spec.host');
  const cpus = s.cpus ?? 0;
  if (!Number.isFinite(cpus) || cpus < 0 || cpus > 1024) throw invalidArgument('spec.cpus', `${cpus}: 0 (best effort) up to 1024`);
  const memoryBytes = s.memoryBytes ?? 0;
  if (!Number.isSafeInteger(memoryBytes) || memoryBytes < 0) throw invalidArgument('spec.memory_bytes', `${memoryBytes} is not a number of bytes`);
  if (memoryBytes !== 0 && memoryBytes < 4 << 20) throw invalidArgument('spec.memory_bytes', `${memoryBytes} is below the 4 MiB a container needs`);
  const env = (s.env ?? []).map((e, i) => {
    if (typeof e !== 'string' || e.indexOf('=') <= 0 || e.includes('\0')) throw invalidArgument(`spec.env[${i}]`, `${JSON.stringify(e)} is not KEY=VALUE`);
    return e;
  });
  const command = (s.command ?? []).map((c, i) => {
    if (typeof c !== 'string' || c.includes('\0')) throw invalidArgument(`spec.command[${i}]`, 'must be a string without NUL');
    return c;
  });
  const ide = checkIde(s.ide, 'spec.ide');
  if (s.architecture && !/^[a-z0-9_]+$/.test(s.architecture)) throw invalidArgument('spec.architecture', `${JSON.stringify(s.architecture)} is not an architecture name (amd64, arm64, ...)`);
  return {
    name,
    image: s.image,
    host: s.host ?? '',
    cpus,
    memoryBytes,
    env,
    ports: checkPorts(s.ports),
    labels: checkLabels(s.labels, 'spec.labels'),
    command,
    hostSelector: checkLabels(s.hostSelector, 'spec.host_selector'),
    architecture: s.architecture ?? '',
    // Only when set: specs stored before IDEs existed stay equal to a retried create without one.
    ...(ide ? { ide } : {}),
  };
}

/** Whether two normalized specs ask for the same workspace (a retried create). */
export function sameSpec(a: WorkspaceSpec, b: WorkspaceSpec): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]));
  return v;
}
