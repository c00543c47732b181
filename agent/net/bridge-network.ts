// A host's container network: the bridge holding the gateway of the host's
// subnet, an address per container from the O(1) allocator (persisted in
// the agent's state, so a restart never hands one out twice), and a veth
// pair per container. A plain class over a NetRunner (net-runner.ts).
//
// Decisions:
// - An address is reserved before the container is created (its
//   /etc/hosts names it) and attached once the container's init exists
//   (its network namespace is the init's). Detach deletes the veth pair;
//   release returns the address. Both are safe to repeat.
// - A failed attach removes what it made before it reports the failure.
import { failAfterCleanup, invalidArgument, LxrError } from '../../proto/shared/errors.js';
import { PersistentAllocator } from '../../proto/shared/allocator.js';
import { formatCidr, formatIpv4, HostAddresses, parseCidr, parseIpv4 } from '../../proto/shared/ipv4.js';
import { DEFAULT_BRIDGE, hostIfName, listLinksStep, listPortsStep, listRoutesStep, LINK_GONE, ourLinks, parseRoutes, planRoutes, type PeerRoute, planAttach, planAttachNative, planBridge, planDetach, planNat, planPorts, planProtect, planUnports, type Endpoint, type NetStep, type PortMapping } from './net-plan.js';
import type { NetRunner } from './net-runner.js';

export interface BridgeNetworkOptions {
  runner: NetRunner;
  /** This host's subnet, e.g. 10.200.3.0/24. */
  subnet: string;
  /** The cluster's pool: traffic to it keeps container addresses (default: the subnet). */
  pool?: string;
  bridge?: string;
  /** Where the allocator keeps its journal. */
  stateDir: string;
  /** This host's LXR ports (agent API, metrics): no container connects to them on any host address. */
  protectPorts?: number[];
  /** LXR servers elsewhere (the controller) that containers may not reach, before SetPeers says more. */
  protectEndpoints?: Endpoint[];
}

/** "IPV4:PORT" -> an endpoint; INVALID_ARGUMENT naming `field` otherwise. */
export function parseEndpoint(s: string, field: string): Endpoint {
  const m = /^(.+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) throw invalidArgument(field, `${JSON.stringify(s)} is not IPV4:PORT`);
  return { ip: formatIpv4(parseIpv4(m[1]!, field)), port };
}

export class BridgeNetwork {
  readonly addresses: HostAddresses;
  readonly bridge: string;
  private readonly alloc: PersistentAllocator;
  /** Endpoints of LXR servers elsewhere that containers may not reach (--controller, then SetPeers). */
  private protectedRemote: Endpoint[];
  private ownPorts: number[];

  constructor(private readonly o: BridgeNetworkOptions) {
    this.protectedRemote = [...(o.protectEndpoints ?? [])];
    this.ownPorts = [...(o.protectPorts ?? [])];
    this.addresses = new HostAddresses(parseCidr(o.subnet, 'subnet'));
    this.bridge = o.bridge ?? DEFAULT_BRIDGE;
    this.alloc = PersistentAllocator.open(o.stateDir, this.addresses.size, { what: `address in ${formatCidr(this.addresses.cidr)}`, exhausted: 'LXR_IP_EXHAUSTED' });
  }

  get gateway(): string {
    return formatIpv4(this.addresses.gateway);
  }

  get prefix(): number {
    return this.addresses.cidr.prefix;
  }

  private async runAll(steps: NetStep[]): Promise<void> {
    if (this.o.runner.runMany) return this.o.runner.runMany(steps);
    for (const s of steps) await this.o.runner.run(s);
  }

  /** The bridge, forwarding, egress NAT, the ports chain and the protected endpoints (idempotent). */
  async ensureBridge(): Promise<void> {
    await this.runAll(planBridge(this.bridge, this.addresses.gateway, this.prefix));
    const subnet = formatCidr(this.addresses.cidr);
    await this.runAll(planNat({ bridge: this.bridge, subnet, pool: this.o.pool ? formatCidr(parseCidr(this.o.pool, 'pool')) : subnet }));
    await this.runAll(planProtect({ ownPorts: this.ownPorts, remote: this.protectedRemote }));
  }



  /**
   * Routes to the other hosts' subnets via their addresses (the whole list;
   * routes to hosts not in it go), and the cluster's LXR endpoints that
   * containers may not reach (the whole list). Checked by field first.
   */
  async setPeers(peers: ReadonlyArray<{ name: string; address: string; subnet: string }>, protectedEndpoints: readonly string[] = []): Promise<string[]> {
    const remote = protectedEndpoints.map((e, i) => parseEndpoint(e, `protected_endpoints[${i}]`));
    const wanted: PeerRoute[] = [];
    peers.forEach((p, i) => {
      const field = `peers[${i}]`;
      const via = formatIpv4(parseIpv4(p.address, `${field}.address`));
      const subnet = formatCidr(parseCidr(p.subnet, `${field}.subnet`));
      if (subnet === formatCidr(this.addresses.cidr)) throw invalidArgument(`${field}.subnet`, `${subnet} is this host's own subnet`);
      if (wanted.some((w) => w.subnet === subnet)) throw invalidArgument(`${field}.subnet`, `${subnet} is listed twice`);
      wanted.push({ subnet, via });
    });
    const current = parseRoutes(await this.o.runner.run(listRoutesStep));
    await this.runAll(planRoutes(current, wanted));
    this.protectedRemote = [...(this.o.protectEndpoints ?? []), ...remote];
    await this.runAll(planProtect({ ownPorts: this.ownPorts, remote: this.protectedRemote }));
    return parseRoutes(await this.o.runner.run(listRoutesStep)).map((r) => `${r.subnet} via ${r.via}`);
  }

  /** This host's own LXR ports (its API, its metrics), known once the servers are bound. */
  async protectOwnPorts(ports: readonly number[]): Promise<void> {
    this.ownPorts = [...ports];
    await this.runAll(planProtect({ ownPorts: this.ownPorts, remote: this.protectedRemote }));
  }

  /** Publishes the container's ports on the host's addresses. */
  async publish(container: string, address: string, ports: readonly PortMapping[]): Promise<void> {
    try {
      await this.runAll(planPorts(container, address, ports));
    } catch (e) {
      return failAfterCleanup(e, [() => this.unpublish(container)]);
    }
  }

  /** Removes every port rule of the container (none is fine). */
  async unpublish(container: string): Promise<void> {
    await this.runAll(planUnports(container, await this.o.runner.run(listPortsStep)));
  }

  /** A free address, or the one asked for (refused clearly when taken or not in the subnet). */
  reserve(address = ''): string {
    if (address === '') return formatIpv4(this.addresses.address(this.alloc.allocate()));
    const slot = this.slotOf(address);
    if (!this.alloc.take(slot)) throw new LxrError('LXR_ALREADY_EXISTS', `address ${address} is in use`, { field: 'network.address' });
    return address;
  }

  /** Returns an address; false when it was not reserved. */
  release(address: string): boolean {
    return this.alloc.release(this.slotOf(address));
  }

  private slotOf(address: string): number {
    return this.addresses.slot(parseIpv4(address, 'network.address'), 'network.address');
  }

  /** Every reserved address. */
  reservedAddresses(): string[] {
    return this.alloc.usedSlots().map((s) => formatIpv4(this.addresses.address(s)));
  }

  isReserved(address: string): boolean {
    return this.alloc.isUsed(this.slotOf(address));
  }

  /** Gives the container (by its init's pid) its veth pair and address; undoes it all on failure. */
  async attach(container: string, pid: number, address: string): Promise<void> {
    const input = { bridge: this.bridge, container, pid, address: parseIpv4(address, 'network.address'), prefix: this.prefix, gateway: this.addresses.gateway };
    // The native helper when the runner has it (one process), else the ip plan.
    const steps = this.o.runner.netsetup ? planAttachNative(input) : planAttach(input);
    try {
      await this.runAll(steps);
    } catch (e) {
      return failAfterCleanup(e, [() => this.detach(container)]);
    }
  }

  /**
   * Deletes veth ends no container holds any more (a create or remove that
   * crashed half way); returns their names.
   */
  async removeLeftovers(containers: readonly string[]): Promise<string[]> {
    const keep = new Set(containers.map(hostIfName));
    const gone = ourLinks(await this.o.runner.run(listLinksStep)).filter((l) => !keep.has(l));
    for (const l of gone) await this.o.runner.run({ ns: 'host', args: ['link', 'del', l], tolerate: LINK_GONE });
    return gone;
  }

  /** Removes the container's veth pair (if any). */
  async detach(container: string): Promise<void> {
    await this.runAll(planDetach(container));
  }

  close(): void {
    this.alloc.close();
  }
}
