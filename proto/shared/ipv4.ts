// IPv4 addresses and CIDR blocks as the allocators see them: a block's
// usable slots numbered 0..size-1, so an allocator deals in slot numbers
// and never in strings. Shared by the agent (container addresses in its
// host's subnet) and the controller (host subnets in the cluster pool).
import { invalidArgument } from './errors.js';

export function parseIpv4(s: string, field = 'address'): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  const parts = m ? m.slice(1).map(Number) : [];
  if (!m || parts.some((p, i) => p > 255 || (m[i + 1]!.length > 1 && m[i + 1]!.startsWith('0')))) {
    throw invalidArgument(field, `${JSON.stringify(s)} is not an IPv4 address`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Cidr {
  /** The network address. */
  base: number;
  prefix: number;
}

export function parseCidr(s: string, field = 'cidr'): Cidr {
  const slash = s.indexOf('/');
  const prefix = slash < 0 ? NaN : Number(s.slice(slash + 1));
  if (slash < 0 || !/^\d{1,2}$/.test(s.slice(slash + 1)) || prefix > 32) throw invalidArgument(field, `${JSON.stringify(s)} is not a CIDR block (like 10.200.0.0/16)`);
  const addr = parseIpv4(s.slice(0, slash), field);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((addr & mask) >>> 0 !== addr) throw invalidArgument(field, `${s} has host bits set (the network is ${formatIpv4((addr & mask) >>> 0)}/${prefix})`);
  return { base: addr, prefix };
}

export const formatCidr = (c: Cidr): string => `${formatIpv4(c.base)}/${c.prefix}`;

/**
 * A block's container addresses: everything but the network address, the
 * gateway (the first host address) and the broadcast address.
 * Slot i is base + 2 + i.
 */
export class HostAddresses {
  readonly size: number;
  readonly gateway: number;

  constructor(readonly cidr: Cidr) {
    if (cidr.prefix > 29) throw invalidArgument('cidr', `${formatCidr(cidr)} is too small: a subnet needs room for a gateway and containers (at most /29)`);
    this.size = 2 ** (32 - cidr.prefix) - 3;
    this.gateway = cidr.base + 1;
  }

  address(slot: number): number {
    return this.cidr.base + 2 + slot;
  }

  /** The slot of an address, or why it cannot have one. */
  slot(addr: number, field = 'address'): number {
    const s = addr - this.cidr.base - 2;
    if (addr === this.cidr.base) throw invalidArgument(field, `${formatIpv4(addr)} is the network address of ${formatCidr(this.cidr)}`);
    if (addr === this.gateway) throw invalidArgument(field, `${formatIpv4(addr)} is the gateway of ${formatCidr(this.cidr)}`);
    if (s === this.size) throw invalidArgument(field, `${formatIpv4(addr)} is the broadcast address of ${formatCidr(this.cidr)}`);
    if (s < 0 || s > this.size) throw invalidArgument(field, `${formatIpv4(addr)} is not in ${formatCidr(this.cidr)}`);
    return s;
  }
}

/** A pool carved into equal subnets: slot i is the i-th /`prefix` block. */
export class Subnets {
  readonly size: number;

  constructor(
    readonly pool: Cidr,
    readonly prefix: number,
  ) {
    if (!Number.isInteger(prefix) || prefix < pool.prefix || prefix > 29) {
      throw invalidArgument('subnet_prefix', `/${prefix} subnets do not fit ${formatCidr(pool)} (from /${pool.prefix} to /29)`);
    }
    this.size = 2 ** (prefix - pool.prefix);
  }

  subnet(slot: number): Cidr {
    return { base: (this.pool.base + slot * 2 ** (32 - this.prefix)) >>> 0, prefix: this.prefix };
  }

  slot(c: Cidr, field = 'subnet'): number {
    const span = 2 ** (32 - this.prefix);
    const off = c.base - this.pool.base;
    if (c.prefix !== this.prefix || off < 0 || off % span !== 0 || off / span >= this.size) {
      throw invalidArgument(field, `${formatCidr(c)} is not a /${this.prefix} subnet of ${formatCidr(this.pool)}`);
    }
    return off / span;
  }
}
