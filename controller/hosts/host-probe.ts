// After a restart the controller knows its hosts from the store but has
// heard from none of them. Rather than hold every host NotReady (and fail
// exec, logs and attach on it) until its next heartbeat, it asks each
// agent once: one that answers is Ready at once, as a heartbeat would make it.
import type { Logger } from '../../proto/shared/log.js';
import type { AgentGateway } from '../agents/agent-gateway.js';
import type { HostRegistry } from './host-registry.js';

/** Asks every host not Ready whether its agent answers; the names of those that did. */
export async function probeHosts(hosts: HostRegistry, gateway: AgentGateway, log?: Logger): Promise<string[]> {
  const ready: string[] = [];
  await Promise.all(
    hosts
      .names()
      .filter((n) => !hosts.isReady(n))
      .map(async (name) => {
        const h = hosts.record(name);
        if (!h) return;
        try {
          await gateway.list({ name, address: h.address });
        } catch (e) {
          log?.info({ host: name, err: e }, 'host does not answer yet; Ready with its first heartbeat');
          return;
        }
        // Removed meanwhile: nothing to mark.
        if (!hosts.record(name)) return;
        hosts.heartbeat(name, null);
        ready.push(name);
      }),
  );
  return ready.sort();
}
