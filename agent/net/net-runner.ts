// Carries out network plans (net-plan.ts) with iproute2: steps for the
// host run in the agent's own network namespace (or, for tests, in the
// namespace of a given process, so a lab never touches the machine's own),
// steps for a container run inside its namespace through nsenter. The fake
// records the steps, and can be told to fail one.
import { execFile } from 'node:child_process';
import { LxrError } from '../../proto/shared/errors.js';
import { findNativeBinary } from '../native-bin.js';
import type { NetStep } from './net-plan.js';

export interface NetRunner {
  /** Runs a step; its standard output. */
  run(step: NetStep): Promise<string>;
  /** Runs steps in order, as few processes as it can (optional: else one by one). */
  runMany?(steps: readonly NetStep[]): Promise<void>;
  /** The native attach helper, when this runner has one (then `lxr-netsetup` steps run it). */
  readonly netsetup?: string | null;
}

const formatStep = (s: NetStep): string => `${s.ns === 'host' ? 'host' : `netns of ${s.ns.pid}`}: ${s.cmd ?? 'ip'} ${s.args.join(' ')}`;

/** native/build/lxr-netsetup of this checkout, or null. */
function defaultNetsetupPath(): string | null {
  return findNativeBinary('lxr-netsetup', 'LXR_NETSETUP');
}

export class LinuxNetRunner implements NetRunner {
  /** The native attach helper, when built: one process per attach instead of two. */
  readonly netsetup: string | null;

  /** hostPid: run host steps in this process's network namespace instead of the agent's. */
  constructor(private readonly o: { hostPid?: number; netsetup?: string | null } = {}) {
    this.netsetup = o.netsetup === undefined ? defaultNetsetupPath() : o.netsetup;
  }

  /**
   * Consecutive `ip` steps for the same namespace that tolerate nothing go
   * to one `ip -batch` process: a container's attach is two processes, not
   * eight. A failure names the step that failed.
   */
  async runMany(steps: readonly NetStep[]): Promise<void> {
    for (let i = 0; i < steps.length; ) {
      const first = steps[i]!;
      const batchable = (s: NetStep) => (s.cmd ?? 'ip') === 'ip' && !s.tolerate && sameNs(s.ns, first.ns);
      let j = i;
      while (j < steps.length && batchable(steps[j]!)) j++;
      if (j - i < 2) {
        await this.run(first);
        i++;
        continue;
      }
      await this.batch(steps.slice(i, j));
      i = j;
    }
  }

  private batch(group: readonly NetStep[]): Promise<void> {
    const ns = group[0]!.ns;
    const pid = ns === 'host' ? this.o.hostPid : ns.pid;
    const [cmd, args] = pid === undefined ? ['ip', ['-batch', '-']] : ['nsenter', ['-t', String(pid), '-n', 'ip', '-batch', '-']];
    return new Promise((resolve, reject) => {
      const child = execFile(cmd, args, { timeout: 10_000 }, (err, _out, stderr) => {
        if (!err) return resolve();
        const line = Number(/Command failed -:(\d+)/.exec(stderr)?.[1] ?? 0);
        const step = group[line - 1] ?? group[0]!;
        const msg = stderr.replace(/Command failed -:\d+\s*/, '').trim() || err.message;
        reject(new LxrError('LXR_HOST_SETUP_FAILED', `network: ${formatStep(step)}: ${msg}`, { step: 'network' }));
      });
      child.stdin!.end(group.map((s) => s.args.join(' ')).join('\n') + '\n');
    });
  }

  run(step: NetStep): Promise<string> {
    const pid = step.ns === 'host' ? this.o.hostPid : step.ns.pid;
    if (step.cmd === 'lxr-netsetup' && !this.netsetup) return Promise.reject(new LxrError('LXR_INTERNAL', 'network: the native helper lxr-netsetup is not built'));
    const prog = step.cmd === 'lxr-netsetup' ? this.netsetup! : (step.cmd ?? 'ip');
    const [cmd, args] = pid === undefined ? [prog, step.args] : ['nsenter', ['-t', String(pid), '-n', prog, ...step.args]];
    return new Promise((resolve, reject) => {
      execFile(cmd, args, { timeout: 10_000 }, (err, out, stderr) => {
        if (!err) return resolve(out);
        const msg = (stderr || err.message).trim();
        if (step.tolerate?.test(msg)) return resolve('');
        reject(new LxrError('LXR_HOST_SETUP_FAILED', `network: ${formatStep(step)}: ${msg}`, { step: 'network' }));
      });
    });
  }
}

const sameNs = (a: NetStep['ns'], b: NetStep['ns']): boolean => (a === 'host' ? b === 'host' : b !== 'host' && a.pid === b.pid);

export class FakeNetRunner implements NetRunner {
  readonly steps: NetStep[] = [];
  /** Fail the step whose formatted text matches, once. */
  failOn: RegExp | null = null;
  /** What a step whose formatted text matches prints. */
  outputs: Array<[RegExp, string]> = [];

  async run(step: NetStep): Promise<string> {
    this.steps.push(step);
    const text = formatStep(step);
    if (this.failOn?.test(text)) {
      this.failOn = null;
      throw new LxrError('LXR_HOST_SETUP_FAILED', `network: ${text}: injected failure`);
    }
    return this.outputs.find(([re]) => re.test(text))?.[1] ?? '';
  }

  /** The recorded steps as text. */
  text(): string[] {
    return this.steps.map(formatStep);
  }
}
