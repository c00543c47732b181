// Container networking as a plan: which iproute2 commands, in which
// network namespace, give a container its veth pair on the host's bridge,
// its address and its default route; and the files (/etc/hosts,
// /etc/resolv.conf, /etc/hostname) it sees. Pure functions: the runner
// (net-runner.ts) carries a plan out, and a fake records it.
import { createHash } from 'node:crypto';
import { formatIpv4 } from '../../proto/shared/ipv4.js';

/** Where a step runs: the agent's own network namespace, or a process's. */
export type NetNs = 'host' | { pid: number };

export interface NetStep {
  ns: NetNs;
  /** The program (default ip). */
  cmd?: 'ip' | 'iptables' | 'sysctl' | 'lxr-netsetup';
  args: string[];
  /** Failures whose message matches are fine (the step's effect is already there, or already gone). */
  tolerate?: RegExp;
}

export const DEFAULT_BRIDGE = 'lxr0';
/** Host-side interface names start with this, so leftovers can be found. */
const HOST_IF_PREFIX = 'lxv';
/** What `ip link del` says of a link that is already gone (also while it goes with its namespace). */
export const LINK_GONE = /Cannot find device|does not exist|No such device/;

const hash = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The host end of a container's veth: stable per container, 13 characters (Linux allows 15). */
export const hostIfName = (container: string): string => `${HOST_IF_PREFIX}${hash(container).slice(0, 10)}`;

/** The bridge's fixed MAC: locally administered, 0a:58 then the gateway's four bytes (unique per host subnet). */
export function bridgeMac(gateway: number): string {
  return ['0a', '58', ...[24, 16, 8, 0].map((s) => ((gateway >>> s) & 0xff).toString(16).padStart(2, '0'))].join(':');
}

/** The host's bridge, holding the gateway address, up. */
export function planBridge(bridge: string, gateway: number, prefix: number): NetStep[] {
  return [
    { ns: 'host', args: ['link', 'add', bridge, 'type', 'bridge'], tolerate: /File exists/ },
    // A bridge without an address of its own takes the lowest of its ports'
    // and changes it as containers come and go: containers that cached the
    // gateway's old address then send into the void until their ARP entry
    // goes stale (tens of seconds). A set address never changes.
    { ns: 'host', args: ['link', 'set', bridge, 'address', bridgeMac(gateway)] },
    { ns: 'host', args: ['addr', 'replace', `${formatIpv4(gateway)}/${prefix}`, 'dev', bridge] },
    { ns: 'host', args: ['link', 'set', bridge, 'up'] },
  ];
}

export interface AttachPlanInput {
  bridge: string;
  container: string;
  /** A process in the container's network namespace (its init). */
  pid: number;
  address: number;
  prefix: number;
  gateway: number;
}

/**
 * A veth pair made on the host with its other end created directly in the
 * container's namespace as eth0 (no move between namespaces afterwards,
 * which waits for an RCU grace period in the kernel); the host end on the
 * bridge; inside, the address, loopback and a default route via the gateway.
 */
export function planAttach(i: AttachPlanInput): NetStep[] {
  const host = hostIfName(i.container);
  const inside: NetNs = { pid: i.pid };
  return [
    { ns: 'host', args: ['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(i.pid)] },
    { ns: 'host', args: ['link', 'set', host, 'master', i.bridge, 'up'] },
    { ns: inside, args: ['addr', 'add', `${formatIpv4(i.address)}/${i.prefix}`, 'dev', 'eth0'] },
    { ns: inside, args: ['link', 'set', 'eth0', 'up'] },
    { ns: inside, args: ['link', 'set', 'lo', 'up'] },
    { ns: inside, args: ['route', 'add', 'default', 'via', formatIpv4(i.gateway), 'dev', 'eth0'] },
  ];
}

/** The same attach in one process over rtnetlink (native/netsetup). */
export function planAttachNative(i: AttachPlanInput): NetStep[] {
  return [{ ns: 'host', cmd: 'lxr-netsetup', args: ['attach', hostIfName(i.container), i.bridge, String(i.pid), `${formatIpv4(i.address)}/${i.prefix}`, formatIpv4(i.gateway)] }];
}

export const listLinksStep: NetStep = { ns: 'host', args: ['-o', 'link', 'show'] };

/** Names of LXR's veth ends in `ip -o link show` output ("7: lxv0123456789@if6: <...>"). */
export function ourLinks(listing: string): string[] {
  const out: string[] = [];
  for (const line of listing.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(line);
    if (m && m[1]!.startsWith(HOST_IF_PREFIX)) out.push(m[1]!);
  }
  return out;
}

/** Deleting the host end deletes the pair (the other end goes with it, in the container). */
export function planDetach(container: string): NetStep[] {
  return [
    { ns: 'host', args: ['link', 'del', hostIfName(container)], tolerate: LINK_GONE },
  ];
}

// ---------------------------------------------------------------- routes to peers

/** Routes to other hosts' subnets carry this protocol number, so LXR's can be listed and told apart. */
const ROUTE_PROTO = '77';

export interface PeerRoute {
  subnet: string;
  via: string;
}

export const listRoutesStep: NetStep = { ns: 'host', args: ['-4', 'route', 'show', 'proto', ROUTE_PROTO] };

/** Parses `ip route show proto 77`: "10.200.4.0/24 via 198.18.0.3 dev eth0 ...". */
export function parseRoutes(listing: string): PeerRoute[] {
  const out: PeerRoute[] = [];
  for (const line of listing.split('\n')) {
    const m = /^(\S+) via (\S+)/.exec(line.trim());
    if (m) out.push({ subnet: m[1]!, via: m[2]! });
  }
  return out;
}

/** From the routes in place to the wanted ones: replace what differs, delete what is no longer wanted. */
export function planRoutes(current: readonly PeerRoute[], wanted: readonly PeerRoute[]): NetStep[] {
  const steps: NetStep[] = [];
  for (const r of current) {
    if (!wanted.some((w) => w.subnet === r.subnet)) steps.push({ ns: 'host', args: ['route', 'del', r.subnet, 'proto', ROUTE_PROTO], tolerate: /No such process/ });
  }
  for (const w of wanted) {
    if (current.some((r) => r.subnet === w.subnet && r.via === w.via)) continue;
    steps.push({ ns: 'host', args: ['route', 'replace', w.subnet, 'via', w.via, 'proto', ROUTE_PROTO] });
  }
  return steps;
}

// ---------------------------------------------------------------- NAT and ports

const CHAIN_NAT = 'LXR-POSTROUTING';
const CHAIN_PORTS = 'LXR-PORTS';
const CHAIN_FORWARD = 'LXR-FORWARD';
const CHAIN_PROTECT = 'LXR-PROTECT';

const ipt = (args: string[], tolerate?: RegExp): NetStep => ({ ns: 'host', cmd: 'iptables', args: ['-w', ...args], ...(tolerate ? { tolerate } : {}) });
/** Makes `from` jump to `chain` exactly once (removing an earlier jump first). */
const jump = (table: string, from: string, chain: string, match: string[] = []): NetStep[] => [
  ipt(['-t', table, '-D', from, ...match, '-j', chain], /does a matching rule exist|Bad rule|No chain/),
  ipt(['-t', table, '-A', from, ...match, '-j', chain]),
];

/**
 * Forwarding on; traffic from the subnet to anywhere outside the cluster
 * pool leaves with the host's address (MASQUERADE); traffic to and from the
 * bridge is forwarded; published ports (PREROUTING from outside, OUTPUT from
 * the host itself, both only for the host's own addresses) go through one
 * chain. Idempotent: chains are created or flushed, jumps made once.
 */
export function planNat(i: { bridge: string; subnet: string; pool: string }): NetStep[] {
  return [
    { ns: 'host', cmd: 'sysctl', args: ['-q', '-w', 'net.ipv4.ip_forward=1'] },
    ipt(['-t', 'nat', '-N', CHAIN_NAT], /exists/),
    ipt(['-t', 'nat', '-F', CHAIN_NAT]),
    ipt(['-t', 'nat', '-A', CHAIN_NAT, '-s', i.subnet, '!', '-d', i.pool, '!', '-o', i.bridge, '-j', 'MASQUERADE']),
    ...jump('nat', 'POSTROUTING', CHAIN_NAT),
    ipt(['-t', 'nat', '-N', CHAIN_PORTS], /exists/),
    ...jump('nat', 'PREROUTING', CHAIN_PORTS, ['-m', 'addrtype', '--dst-type', 'LOCAL']),
    ...jump('nat', 'OUTPUT', CHAIN_PORTS, ['-m', 'addrtype', '--dst-type', 'LOCAL']),
    // Containers' traffic to LXR's own servers is refused first (planProtect fills the chain),
    // whether it is routed (FORWARD) or for this host (INPUT, inserted ahead of any host rule).
    ipt(['-t', 'filter', '-N', CHAIN_PROTECT], /exists/),
    ipt(['-t', 'filter', '-D', 'INPUT', '-i', i.bridge, '-j', CHAIN_PROTECT], /does a matching rule exist|Bad rule|No chain/),
    ipt(['-t', 'filter', '-I', 'INPUT', '1', '-i', i.bridge, '-j', CHAIN_PROTECT]),
    ipt(['-t', 'filter', '-N', CHAIN_FORWARD], /exists/),
    ipt(['-t', 'filter', '-F', CHAIN_FORWARD]),
    ipt(['-t', 'filter', '-A', CHAIN_FORWARD, '-i', i.bridge, '-j', CHAIN_PROTECT]),
    ipt(['-t', 'filter', '-A', CHAIN_FORWARD, '-o', i.bridge, '-j', 'ACCEPT']),
    ipt(['-t', 'filter', '-A', CHAIN_FORWARD, '-i', i.bridge, '-j', 'ACCEPT']),
    ...jump('filter', 'FORWARD', CHAIN_FORWARD),
  ];
}

export interface Endpoint {
  ip: string;
  port: number;
}

/**
 * What containers may not connect to: this host's own LXR ports on any of
 * its addresses (the gateway included), and the endpoints of LXR's servers
 * elsewhere in the cluster. Refused with a TCP reset, so a client fails at
 * once. The chain is rebuilt whole (flush, then fill): idempotent.
 */
export function planProtect(i: { ownPorts: readonly number[]; remote: readonly Endpoint[] }): NetStep[] {
  const reject = ['-j', 'REJECT', '--reject-with', 'tcp-reset'];
  const own = [...new Set(i.ownPorts)].sort((a, b) => a - b);
  const remote = [...new Map(i.remote.map((e) => [`${e.ip}:${e.port}`, e])).values()];
  return [
    ipt(['-t', 'filter', '-N', CHAIN_PROTECT], /exists/),
    ipt(['-t', 'filter', '-F', CHAIN_PROTECT]),
    ...(own.length ? [ipt(['-t', 'filter', '-A', CHAIN_PROTECT, '-p', 'tcp', '-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'multiport', '--dports', own.join(','), ...reject])] : []),
    ...remote.map((e) => ipt(['-t', 'filter', '-A', CHAIN_PROTECT, '-d', `${e.ip}/32`, '-p', 'tcp', '--dport', String(e.port), ...reject])),
  ];
}

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

/** The comment that marks a container's port rules, so they can be found and removed. */
const portComment = (container: string): string => `lxr:${container}`;

export function planPorts(container: string, address: string, ports: readonly PortMapping[]): NetStep[] {
  return ports.map((p) =>
    ipt(['-t', 'nat', '-A', CHAIN_PORTS, '-p', p.protocol, '--dport', String(p.hostPort), '-m', 'comment', '--comment', portComment(container), '-j', 'DNAT', '--to-destination', `${address}:${p.containerPort}`]),
  );
}

/** The steps that delete a container's port rules, from a listing of the chain (`iptables -S`). */
export function planUnports(container: string, listing: string): NetStep[] {
  const mark = portComment(container);
  return listing
    .split('\n')
    .filter((l) => l.startsWith(`-A ${CHAIN_PORTS} `))
    .map((l) => splitRule(l.slice(3)))
    .filter((rule) => rule.some((t, i) => t === mark && rule[i - 1] === '--comment'))
    .map((rule) => ipt(['-t', 'nat', '-D', ...rule], /does a matching rule exist|Bad rule/));
}

/** iptables -S quotes some values ("lxr:web"); nothing we write has spaces. */
const splitRule = (rule: string): string[] => rule.trim().split(/\s+/).map((t) => t.replace(/^"(.*)"$/, '$1'));

export const listPortsStep: NetStep = ipt(['-t', 'nat', '-S', CHAIN_PORTS]);

export interface ContainerFilesInput {
  hostname: string;
  address: string;
  /** Nameservers for resolv.conf; loopback ones (a host's local stub) are useless inside and dropped. */
  nameservers: string[];
  search: string[];
}

/** /etc/hosts, /etc/resolv.conf and /etc/hostname as the container sees them. */
export function containerFiles(i: ContainerFilesInput): { hosts: string; resolvConf: string; hostname: string } {
  const ns = i.nameservers.filter((n) => !/^127\./.test(n) && n !== '::1');
  return {
    hosts: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${i.address}\t${i.hostname}\n`,
    resolvConf: [...(i.search.length ? [`search ${i.search.join(' ')}`] : []), ...ns.map((n) => `nameserver ${n}`), ''].join('\n'),
    hostname: `${i.hostname}\n`,
  };
}

/** nameserver and search lines of a resolv.conf. */
export function parseResolvConf(text: string): { nameservers: string[]; search: string[] } {
  const nameservers: string[] = [];
  let search: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === 'nameserver' && rest[0]) nameservers.push(rest[0]);
    else if ((key === 'search' || key === 'domain') && rest.length) search = rest;
  }
  return { nameservers, search };
}
