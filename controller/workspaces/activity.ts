// What a person last did in each workspace, and when: input in exec
// sessions and the web terminal, traffic through forwarded ports (and, with
// the IDE, its requests). Idle workspaces are stopped by it (--idle-timeout).
// Kept in memory: a controller that restarts counts from its own start, so
// a restart never makes a workspace look idle.
export interface LastActivity {
  /** Epoch milliseconds. */
  at: number;
  /** What it was, e.g. "exec input", "web terminal input", "port 8080". */
  kind: string;
}

export class Activity {
  private readonly last = new Map<string, LastActivity>();
  private readonly since: number;

  constructor(private readonly now: () => number = Date.now) {
    this.since = now();
  }

  touch(workspace: string, kind: string): void {
    this.last.set(workspace, { at: this.now(), kind });
  }

  /**
   * The last activity, but no earlier than the workspace's start (a started
   * workspace is not idle) or the controller's.
   */
  of(workspace: string, startedAt: string): LastActivity {
    const l = this.last.get(workspace);
    const started = Date.parse(startedAt) || 0;
    const floor = Math.max(started, this.since);
    if (l && l.at >= floor) return l;
    return started >= this.since ? { at: started, kind: 'started' } : { at: this.since, kind: 'controller started' };
  }

  forget(workspace: string): void {
    this.last.delete(workspace);
  }
}
