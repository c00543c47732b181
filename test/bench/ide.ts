// The IDE benchmark (issue 9): the time from `lxrctl create --ide
// code-server` to VS Code's workbench loaded in headless Chromium through
// the controller, in a lab of one host:
// - cold, the first IDE on a host: the tools directory is empty, so the time
//   includes installing Node and code-server from npm (`lxr-agent tools
//   install`, which is what the agent runs; the lab's agents cannot reach
//   npm themselves), then the create;
// - warm: the tools are there; a new workspace each time.
// The peer, side by side in the same run: podman running the same image
// with the same tools mounted and the same code-server command, in the lab
// host's network namespace (--network host there), timed from `podman run`
// to the workbench loaded in the same browser. Each sample uses a fresh
// browser context (nothing cached between samples).
import { execFile, spawn } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { chromium, type Browser } from 'playwright-core';
import { CONTROLLER_WEB_PORT, labDown, labUp, SWITCH_ADDRESS, type LabState } from '../../cli/lab/lab.js';
import { ImagesClient, unary, WorkspacesClient } from '../../proto/shared/api.js';
import { IDE_MOUNTS } from '../../proto/shared/ide.js';
import { ENTRY, IdeTools } from '../../agent/ide/tools.js';
import { catchInterrupts, checkInterrupted } from './interrupt.js';
import { formatTable, round, speedRatio, summarize } from './stats.js';

const run = promisify(execFile);
const REPO = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const LXRCTL = path.join(REPO, 'bin', 'lxrctl');
const IMAGE = 'lab.example/lxr/debian:12';
const PODMAN = ['--runtime', 'runc'];
const PODMAN_RUN = ['--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096'];
const PEER_PORT = 13338;
const WEB = `https://${SWITCH_ADDRESS}:${CONTROLLER_WEB_PORT}`;

export interface IdeBenchResult {
  cold: { installMs: number; createToWorkbenchMs: number; totalMs: number };
  warm: { lxr: ReturnType<typeof summarize>; podman: ReturnType<typeof summarize> };
  ratio: string;
}

export async function ideBench(o: { count: number; log: (l: string) => void }): Promise<IdeBenchResult> {
  const release = catchInterrupts('lxrctl lab ls; podman ps -a');
  const work = await mkdtemp(path.join(tmpdir(), 'lxr-bench-ide-'));
  const toolsDir = path.join(work, 'tools');
  const dir = path.join(work, 'lab');
  let lab: LabState | undefined;
  let browser: Browser | undefined;
  let ws: WorkspacesClient | undefined;
  const podmanImages: string[] = [];
  try {
    o.log('building the Debian image (debootstrap)');
    const tar = path.join(work, 'debian.tar');
    await run('bash', [path.join(REPO, 'scripts', 'debian-image.sh'), tar, IMAGE], { maxBuffer: 8 << 20 });
    lab = await labUp({ name: `bide${process.pid % 100000}`, dir, hosts: 1, controller: true, toolsDir });
    const host = lab.hosts[0]!;
    const images = new ImagesClient(`unix://${host.socket}`, grpc.credentials.createInsecure());
    await unary(images, images.Import, { path: tar }, { deadline: Date.now() + 300_000 });
    images.close();
    ws = new WorkspacesClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    const wrapper = path.join(work, 'chromium-in-lab.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec nsenter -t ${lab.switch.pid} -n /usr/bin/chromium "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({ executablePath: wrapper, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    const env = { ...process.env, LXR_SERVER: `unix://${lab.controller!.socket}`, LXR_CONFIG: path.join(work, 'lxrctl.json') };

    /** Loads `url` until the workbench shows (the IDE may not answer yet: 502 until it does). */
    const workbench = async (url: string, reload: string): Promise<void> => {
      const ctx = await browser!.newContext({ ignoreHTTPSErrors: true });
      try {
        const page = await ctx.newPage();
        // 502 (or a refused connection, for the peer) until the IDE answers.
        for (let i = 0, target = url; ; i++, target = reload) {
          const res = await page.goto(target).catch(() => null);
          if (res && res.status() < 500) break;
          if (i > 1200) throw new Error(`${target}: no IDE after 5 minutes`);
          await new Promise((r) => setTimeout(r, 250));
        }
        await page.waitForSelector('.monaco-workbench', { timeout: 120_000 });
      } finally {
        await ctx.close();
      }
    };
    const lxrOnce = async (name: string): Promise<number> => {
      const t0 = performance.now();
      await run(LXRCTL, ['create', name, '--image', IMAGE, '--ide', 'code-server', '--timeout', '900'], { env });
      const url = (await unary(ws!, ws!.Open, { name })).url;
      await workbench(url, `${WEB}/w/${name}/`);
      const ms = performance.now() - t0;
      await run(LXRCTL, ['rm', '-f', name], { env });
      return ms;
    };

    o.log('cold: installing the tools from npm, then the first IDE workspace');
    const c0 = performance.now();
    await new IdeTools({ dir: toolsDir }).ensure();
    const installMs = performance.now() - c0;
    const createToWorkbenchMs = await lxrOnce('cold');
    o.log(`cold: install ${(installMs / 1000).toFixed(1)} s + create to workbench ${(createToWorkbenchMs / 1000).toFixed(1)} s`);

    o.log('podman: loading the same image');
    const loaded = (await run('podman', ['load', '-i', tar])).stdout;
    const id = /Loaded image(?:\(s\))?: (\S+)/.exec(loaded)?.[1] ?? IMAGE;
    podmanImages.push(id);
    const tools = new IdeTools({ dir: toolsDir }).paths;
    const podmanOnce = async (i: number): Promise<number> => {
      const name = `lxr-bench-ide-${process.pid}-${i}`;
      const t0 = performance.now();
      // In the lab host's network namespace: its address is reachable from the browser's.
      await run('nsenter', ['-t', String(host.holder.pid), '-n', 'podman', ...PODMAN, 'run', '-d', '--name', name, '--network', 'host', ...PODMAN_RUN,
        '-v', `${tools.node}:${IDE_MOUNTS.node}:ro`, '-v', `${tools.codeServer}:${IDE_MOUNTS.codeServer}:ro`, '-w', '/root', id,
        `${IDE_MOUNTS.node}/bin/node`, `${IDE_MOUNTS.codeServer}/${ENTRY}`, '--bind-addr', `${host.address}:${PEER_PORT}`, '--auth', 'none',
        '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', '--config', '/dev/null', '/root']);
      try {
        await workbench(`http://${host.address}:${PEER_PORT}/`, `http://${host.address}:${PEER_PORT}/`);
        return performance.now() - t0;
      } finally {
        await run('podman', [...PODMAN, 'rm', '-f', '-t', '0', name]).catch(() => {});
      }
    };

    const lxr: number[] = [];
    const podman: number[] = [];
    for (let i = 0; i < o.count; i++) {
      checkInterrupted();
      lxr.push(await lxrOnce(`warm${i}`));
      podman.push(await podmanOnce(i));
      o.log(`warm ${i + 1}/${o.count}: lxr ${(lxr[i]! / 1000).toFixed(2)} s, podman ${(podman[i]! / 1000).toFixed(2)} s`);
    }
    const sl = summarize(lxr);
    const sp = summarize(podman);
    return {
      cold: { installMs: round(installMs, 0), createToWorkbenchMs: round(createToWorkbenchMs, 0), totalMs: round(installMs + createToWorkbenchMs, 0) },
      warm: { lxr: sl, podman: sp },
      ratio: speedRatio('lxr', sl.median, 'podman', sp.median).text,
    };
  } finally {
    ws?.close();
    await browser?.close().catch(() => {});
    for (const i of podmanImages) await run('podman', ['rmi', '-f', i]).catch(() => {});
    if (lab) await labDown(dir).catch((e: unknown) => o.log(`lab down: ${(e as Error).message}`));
    await rm(work, { recursive: true, force: true });
    release();
  }
}

export function formatIdeReport(r: IdeBenchResult): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  return [
    'create --ide code-server to the VS Code workbench loaded in Chromium (through the controller)',
    formatTable(
      ['', 'median', 'p90', 'min', 'n'],
      [
        ['lxr warm', s(r.warm.lxr.median), s(r.warm.lxr.p90), s(r.warm.lxr.min), String(r.warm.lxr.n)],
        ['podman warm (same image, tools, command)', s(r.warm.podman.median), s(r.warm.podman.p90), s(r.warm.podman.min), String(r.warm.podman.n)],
      ],
    ),
    `warm: ${r.ratio}`,
    `cold (first IDE on a host): ${s(r.cold.totalMs)} = tools install from npm ${s(r.cold.installMs)} + create to workbench ${s(r.cold.createToWorkbenchMs)}; cold/warm = ${(r.cold.totalMs / r.warm.lxr.median).toFixed(1)}`,
  ].join('\n');
}
