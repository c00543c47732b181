// What an operator does to hosts that involves their workspaces: drain
// (cordon, then stop every running workspace there: their files stay on the
// host, so they are not moved) and removal (refused while workspaces are
// placed there, unless forced).
import { LxrError } from '../../proto/shared/errors.js';
import type { ClusterHost } from '../../proto/shared/controller-types.js';
import type { WorkspaceService } from '../workspaces/workspace-service.js';
import type { HostRegistry } from './host-registry.js';

export class HostAdmin {
  constructor(
    private readonly hosts: HostRegistry,
    private readonly workspaces: WorkspaceService,
  ) {}

  /** The host as the API shows it: with what its workspaces reserve. */
  view(name: string): ClusterHost {
    const v = this.hosts.view(name);
    const r = this.workspaces.hostViews().find((h) => h.name === name);
    return { ...v, reservedCpus: r?.reservedCpus ?? 0, reservedMemoryBytes: r?.reservedMemoryBytes ?? 0, workspaces: r?.workspaces ?? 0 };
  }

  list(): ClusterHost[] {
    return this.hosts.names().map((n) => this.view(n));
  }

  async cordon(name: string, cordoned: boolean): Promise<ClusterHost> {
    await this.hosts.setCordoned(name, cordoned);
    return this.view(name);
  }

  async drain(name: string): Promise<{ host: ClusterHost; stopped: string[] }> {
    await this.hosts.setCordoned(name, true);
    const stopped: string[] = [];
    const failed: string[] = [];
    for (const ws of this.workspaces.placedOn(name)) {
      if (this.workspaces.get(ws).state !== 'Running') continue;
      try {
        await this.workspaces.stop(ws);
        stopped.push(ws);
      } catch (e) {
        failed.push(`${ws}: ${(e as Error).message}`);
      }
    }
    if (failed.length) throw new LxrError('LXR_UNAVAILABLE', `host ${name} is cordoned, but ${failed.length} workspace(s) could not be stopped: ${failed.join('; ')}`);
    return { host: this.view(name), stopped };
  }

  async remove(name: string, force: boolean): Promise<void> {
    this.hosts.must(name);
    const placed = this.workspaces.placedOn(name);
    if (placed.length && !force) {
      throw new LxrError('LXR_ILLEGAL_STATE', `host ${name} still has workspaces: ${placed.join(', ')} (delete them first, or remove with force to forget them)`);
    }
    if (placed.length) await this.workspaces.forget(name);
    await this.hosts.remove(name);
  }
}
