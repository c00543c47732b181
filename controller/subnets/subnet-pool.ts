// The cluster's subnet pool: each host gets one subnet (a /24 by default)
// of the pool (default 10.200.0.0/16), so container addresses never clash
// across hosts. The O(1) allocator holds the slots in memory; the durable
// truth is the subnet written in each host's record, from which the pool is
// rebuilt at start (one store, so the two can never disagree after a crash).
import { SlotAllocator } from '../../proto/shared/allocator.js';
import { LxrError } from '../../proto/shared/errors.js';
import { formatCidr, parseCidr, Subnets } from '../../proto/shared/ipv4.js';

export class SubnetPool {
  private readonly subnets: Subnets;
  private readonly slots: SlotAllocator;

  constructor(
    readonly pool: string,
    readonly prefix: number,
  ) {
    this.subnets = new Subnets(parseCidr(pool, 'pool'), prefix);
    this.slots = new SlotAllocator(this.subnets.size);
  }

  get size(): number {
    return this.slots.size;
  }

  get used(): number {
    return this.slots.allocated;
  }

  /** Whether `cidr` is one of the pool's subnets (and which slot). */
  slotOf(cidr: string, field = 'subnet'): number {
    return this.subnets.slot(parseCidr(cidr, field), field);
  }

  /** Marks a specific subnet used; false when it is taken already. */
  take(cidr: string): boolean {
    return this.slots.take(this.slotOf(cidr));
  }

  /** A free subnet; RESOURCE_EXHAUSTED (LXR_SUBNET_EXHAUSTED) when none is left. */
  allocate(): string {
    const s = this.slots.allocate();
    if (s === null) {
      throw new LxrError('LXR_SUBNET_EXHAUSTED', `no free /${this.prefix} subnet left in the pool ${this.pool}: all ${this.size} are given to hosts (remove a host, or start the controller with a larger --pool or a longer --subnet-prefix)`);
    }
    return formatCidr(this.subnets.subnet(s));
  }

  release(cidr: string): boolean {
    return this.slots.release(this.slotOf(cidr));
  }

  isUsed(cidr: string): boolean {
    return this.slots.isUsed(this.slotOf(cidr));
  }
}
