// Network setup per container (issue 5): LXR's BridgeNetwork.attach (an
// address from the allocator, a veth pair on the bridge, eth0 with address
// and route) against Debian's CNI bridge plugin with host-local IPAM doing
// the same job (ADD), side by side in one run, each in a lab: a host
// network namespace and one namespace per container, all held by `sleep`
// processes this bench starts and kills. Nothing runs in the machine's own
// namespace.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BridgeNetwork } from '../../agent/net/bridge-network.js';
import { LinuxNetRunner } from '../../agent/net/net-runner.js';
import { formatTable, round, speedRatio, summarize } from './stats.js';

const run = promisify(execFile);
const CNI_DIR = '/usr/lib/cni';

export interface NetBenchResult {
  msPerContainer: Record<string, { median: number; p90: number; n: number }>;
  target: { met: boolean | null; text: string };
  notes: string[];
}

export async function netBench(o: { count: number; log: (l: string) => void }): Promise<NetBenchResult> {
  const notes: string[] = [];
  const holders: ChildProcess[] = [];
  const dir = await mkdtemp(path.join(tmpdir(), 'lxr-bench-net-'));
  const holder = async (): Promise<number> => {
    const p = spawn('unshare', ['--net', 'sleep', '1000'], { stdio: 'ignore' });
    holders.push(p);
    for (let i = 0; i < 100; i++) {
      const cmd = await run('cat', [`/proc/${p.pid}/cmdline`]).then((r) => r.stdout, () => '');
      if (cmd.startsWith('sleep')) return p.pid!;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('namespace holder did not start');
  };
  try {
    const host = await holder();
    const net = new BridgeNetwork({ runner: new LinuxNetRunner({ hostPid: host }), subnet: '198.18.20.0/24', stateDir: path.join(dir, 'alloc') });
    await net.ensureBridge();
    const lxr: number[] = [];
    const cni: number[] = [];
    const haveCni = existsSync(path.join(CNI_DIR, 'bridge')) && existsSync(path.join(CNI_DIR, 'host-local'));
    if (!haveCni) notes.push(`${CNI_DIR}/bridge not found (containernetworking-plugins): CNI skipped`);
    const cniConf = JSON.stringify({ cniVersion: '1.0.0', name: 'lxrbench', type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: false, ipam: { type: 'host-local', subnet: '198.18.21.0/24', dataDir: path.join(dir, 'cni-ipam') } });
    const cniCall = (command: string, id: string, pid: number) =>
      new Promise<void>((resolve, reject) => {
        const c = spawn('nsenter', ['-t', String(host), '-n', path.join(CNI_DIR, 'bridge')], {
          env: { CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: `/proc/${pid}/ns/net`, CNI_IFNAME: 'eth0', CNI_PATH: CNI_DIR, PATH: process.env.PATH ?? '' },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let err = '';
        c.stdout.resume();
        c.stderr.on('data', (d: Buffer) => (err += d));
        c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`CNI ${command}: exit ${code}: ${err}`))));
        c.stdin.end(cniConf);
      });
    o.log(`net bench: ${o.count} containers per contender, alternating; lab namespaces held by this bench`);
    for (let i = 0; i < o.count + 2; i++) {
      const warm = i < 2;
      const a = await holder();
      const t0 = process.hrtime.bigint();
      const addr = net.reserve();
      await net.attach(`c${i}`, a, addr);
      const t1 = process.hrtime.bigint();
      if (!warm) lxr.push(Number(t1 - t0) / 1e6);
      await net.detach(`c${i}`);
      net.release(addr);
      if (haveCni) {
        const b = await holder();
        const c0 = process.hrtime.bigint();
        await cniCall('ADD', `k${i}`, b);
        const c1 = process.hrtime.bigint();
        if (!warm) cni.push(Number(c1 - c0) / 1e6);
        await cniCall('DEL', `k${i}`, b);
      }
    }
    net.close();
    const stat = (v: number[]) => {
      const s = summarize(v);
      return { median: round(s.median), p90: round(s.p90), n: s.n };
    };
    const res: NetBenchResult = { msPerContainer: { lxr: stat(lxr), ...(cni.length ? { 'cni bridge + host-local': stat(cni) } : {}) }, target: { met: null, text: 'CNI not measured' }, notes };
    if (cni.length) {
      const l = res.msPerContainer['lxr']!.median;
      const c = res.msPerContainer['cni bridge + host-local']!.median;
      res.target = { met: c / l >= 2, text: speedRatio('lxr', l, 'cni bridge', c).text };
    }
    return res;
  } finally {
    for (const h of holders) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

export function formatNetReport(r: NetBenchResult): string {
  return [
    'network setup per container (ms)',
    formatTable(['contender', 'median', 'p90', 'n'], Object.entries(r.msPerContainer).map(([k, s]) => [k, s.median.toFixed(2), s.p90.toFixed(2), String(s.n)])),
    `target: ${r.target.met === null ? '?' : r.target.met ? 'met' : 'NOT met'}  at least 2x faster than the CNI bridge plugin: ${r.target.text}`,
    ...r.notes.map((n) => `note: ${n}`),
  ].join('\n');
}
