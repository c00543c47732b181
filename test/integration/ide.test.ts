// IDE workspaces (issue 9): VS Code (code-server) in a workspace on a lab
// host, served by the controller at /w/NAME/, in headless Chromium (Debian's,
// driven by playwright-core) running inside the lab's network namespace.
// The workspace image is Debian 12 built here with debootstrap
// (scripts/debian-image.sh). The lab hosts share the machine's IDE tools
// directory (lab.ts: their agents cannot reach npm); it is filled here if
// install.sh did not.
//
// Shown: the workbench loads through the controller for a workspace on
// another host; a file made in the IDE's terminal is seen by exec; the IDE
// is restarted when it dies; nothing is served without a credential; an
// image without glibc is refused with an error that says so.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { CONTROLLER_WEB_PORT, DEFAULT_LAB_TOOLS_DIR, labDown, labUp, SWITCH_ADDRESS, type LabState } from '../../cli/lab/lab.js';
import { ClusterExecClient, ImagesClient, TrustClient, unary, WorkspacesClient, type ExecClient } from '../../proto/shared/api.js';
import type { Workspace } from '../../proto/shared/controller-types.js';
import { IdeTools } from '../../agent/ide/tools.js';
import { agentTestSkip, grpcErr, importBusyboxOn } from '../helpers/agent.js';
import { ExecStream } from '../helpers/exec-stream.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const REPO = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const LXRCTL = path.join(REPO, 'bin', 'lxrctl');
const DEBIAN = 'lab.example/lxr/debian:12';
const BUSYBOX = 'lab.example/lxr/busybox:v1';
const CHROMIUM = '/usr/bin/chromium';
const WEB = `https://${SWITCH_ADDRESS}:${CONTROLLER_WEB_PORT}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pids of the workspace's code-server processes (it forks its server), read from /proc inside it. */
const CODE_SERVER_PIDS = `for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/opt/lxr/node/bin/node /opt/lxr/code-server/.*entry.js' && echo \${p#/proc/}; done | sort -n | tr '\\n' ' '`;

describe('IDE workspaces in the lab', { skip: agentTestSkip, timeout: 1_800_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let ws: WorkspacesClient;
  let exec: ExecClient;
  let browser: Browser | undefined;
  let ctx: BrowserContext | undefined;

  const get = async (name: string): Promise<Workspace> => (await unary(ws, ws.Get, { name })).workspace!;
  const sh = async (container: string, script: string): Promise<string> => {
    const r = await ExecStream.start(exec, { container, args: ['sh', '-c', script] }).done;
    assert.equal(r.exit?.code, 0, r.stderr.toString());
    return r.stdout.toString();
  };
  const curl = async (url: string, ...args: string[]): Promise<{ status: number; body: string }> => {
    const { stdout } = await run('nsenter', ['-t', String(lab.switch.pid), '-n', 'curl', '-sk', '-o', '-', '-w', '\n%{http_code}', '--max-time', '10', ...args, url], { maxBuffer: 8 << 20 });
    const i = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
  };

  before(async () => {
    work = await ownedTempDir('ide');
    dir = path.join(work, 'lab');
    // Normally installed by install.sh already: then this does nothing.
    await new IdeTools({ dir: DEFAULT_LAB_TOOLS_DIR }).ensure();
    const tar = path.join(work, 'debian.tar');
    await run('bash', [path.join(REPO, 'scripts', 'debian-image.sh'), tar, DEBIAN], { maxBuffer: 8 << 20 });
    lab = await labUp({ name: uniqueId('e').toLowerCase().slice(0, 20), dir, hosts: 2, controller: true });
    ws = new WorkspacesClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    exec = new ClusterExecClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    for (const h of lab.hosts) {
      const images = new ImagesClient(`unix://${h.socket}`, grpc.credentials.createInsecure());
      try {
        await unary(images, images.Import, { path: tar }, { deadline: Date.now() + 300_000 });
      } finally {
        images.close();
      }
    }
    await importBusyboxOn(work, lab.hosts.map((h) => h.socket), BUSYBOX);
    const wrapper = path.join(work, 'chromium-in-lab.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec nsenter -t ${lab.switch.pid} -n ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({ executablePath: wrapper, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  });

  after(async () => {
    await ctx?.close();
    await browser?.close();
    ws?.close();
    exec?.close();
    if (dir) assert.deepEqual(await labDown(dir), []);
    if (work) await run('rm', ['-rf', work]);
  });

  test('VS Code loads through the controller for a workspace on another host; a file made in its terminal is seen by exec', async () => {
    const created = await unary(ws, ws.Create, { spec: { name: 'ide1', image: DEBIAN, host: 'n2', ide: 'code-server' }, wait: true }, { deadline: Date.now() + 900_000 });
    assert.equal(created.workspace?.state, 'Running', created.workspace?.reason);
    assert.equal(created.workspace?.host, 'n2');
    assert.equal(created.workspace?.spec?.ide, 'code-server');
    // The tools are the host's, read-only.
    assert.match(await sh('ide1', '/opt/lxr/node/bin/node --version; touch /opt/lxr/code-server/x 2>&1 || echo read-only'), /^v24\.\d+\.\d+\ntouch: cannot touch '\/opt\/lxr\/code-server\/x': Read-only file system\nread-only\n$/);

    const { url } = await unary(ws, ws.Open, { name: 'ide1' });
    assert.match(url, new RegExp(`^${WEB.replace(/\./g, '\\.')}/w/ide1/\\?link=`), 'an IDE workspace opens on its IDE');
    const page = await ctx!.newPage();
    // The IDE may still be starting right after the create: the page says so (502) until it answers.
    for (let i = 0, target = url; ; i++, target = `${WEB}/w/ide1/`) {
      const res = await page.goto(target);
      if (res && res.status() < 500) break;
      assert.ok(i < 120, `no IDE after 2 minutes: ${res?.status()} ${await res?.text()}`);
      await sleep(1000);
    }
    await page.waitForSelector('.monaco-workbench', { timeout: 120_000 });
    // code-server opened the workspace's working directory (/root) under /w/ide1/.
    assert.match(page.url(), new RegExp(`^${WEB.replace(/\./g, '\\.')}/w/ide1/\\?folder=(%2F|/)root$`));
    // Its remote connection is up: the explorer lists the folder.
    await page.waitForSelector('.explorer-folders-view, .monaco-workbench .part.sidebar', { timeout: 120_000 });

    // A terminal in the IDE, from the command palette. The workbench may still
    // be loading: an Enter while the palette refilters is lost (the palette
    // stays open with the command highlighted), so it is pressed again until
    // the terminal is there, once the command is the highlighted row.
    const terminal = '.terminal-wrapper .xterm-helper-textarea';
    await page.keyboard.press('F1');
    await page.waitForSelector('.quick-input-widget input', { timeout: 30_000 });
    await page.keyboard.type('Terminal: Create New Terminal');
    for (let i = 0; ; i++) {
      await page.waitForSelector('.quick-input-widget .monaco-list-row.focused', { timeout: 30_000 }).catch(() => null);
      if (await page.locator('.quick-input-widget').isVisible()) await page.keyboard.press('Enter');
      if (await page.waitForSelector(terminal, { timeout: 10_000 }).then(() => true, () => false)) break;
      assert.ok(i < 6, 'no terminal after 6 tries of "Terminal: Create New Terminal"');
    }
    await sleep(2000);
    await page.locator(terminal).last().focus();
    await page.keyboard.type('echo "made in the IDE on $(hostname)" > /root/from-ide.txt\n');
    // Seen by `lxrctl exec`, the command line a person uses.
    const lxrctl = (...args: string[]) => run(LXRCTL, args, { env: { ...process.env, LXR_SERVER: `unix://${lab.controller!.socket}`, LXR_CONFIG: path.join(work, 'lxrctl.json') } }).then((r) => r.stdout);
    // What a person does in the IDE is activity (idle detection), as `lxrctl inspect` shows.
    const inspected = JSON.parse(await lxrctl('inspect', 'ide1')) as Workspace;
    assert.equal(inspected.lastActivityKind, 'ide');
    assert.ok(Date.now() - Date.parse(inspected.lastActivity!) < 30_000, inspected.lastActivity);
    let seen = '';
    for (let i = 0; i < 60 && !seen.includes('made in the IDE'); i++) {
      await sleep(1000);
      seen = await lxrctl('exec', 'ide1', '--', 'sh', '-c', 'cat /root/from-ide.txt 2>/dev/null || true');
    }
    assert.equal(seen, 'made in the IDE on ide1\n');
    await page.close();
  });

  test('code-server that dies is started again in its workspace', async () => {
    const pids = async (): Promise<string[]> => (await sh('ide1', CODE_SERVER_PIDS)).trim().split(/\s+/).filter(Boolean);
    const before = await pids();
    assert.ok(before.length > 0, 'code-server runs');
    await sh('ide1', `kill -9 ${before.join(' ')}`);
    let after: string[] = [];
    for (let i = 0; i < 60 && (after.length === 0 || after.some((p) => before.includes(p))); i++) {
      await sleep(1000);
      after = await pids();
    }
    assert.ok(after.length > 0, 'a new code-server runs');
    assert.deepEqual(after.filter((p) => before.includes(p)), [], 'none of the killed ones');
    // It answers again through the controller, to the browser (which holds the cookie and runs in the
    // lab's namespace; page.request would send from this process, outside the lab).
    const page = await ctx!.newPage();
    let status = 0;
    let body = '';
    for (let i = 0; i < 60 && status !== 200; i++) {
      const r = await page.goto(`${WEB}/w/ide1/healthz`);
      status = r?.status() ?? 0;
      body = (await r?.text()) ?? '';
      if (status !== 200) await sleep(1000);
    }
    assert.equal(status, 200, body);
    assert.match(body, /"status":"(alive|expired)"/);
    await page.close();
  });

  test('nothing of the IDE is served without a credential for that workspace', async () => {
    for (const p of ['/w/ide1/', '/w/ide1/healthz', '/w/ide1/static/out/browser/workbench/workbench.html']) {
      const r = await curl(`${WEB}${p}`);
      assert.equal(r.status, 401, p);
      assert.match(r.body, /no link or credential came \(lxrctl open ide1 prints a link\)/);
    }
    const up = await curl(`${WEB}/w/ide1/stable-x?reconnectionToken=x`, '-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13', '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==');
    assert.equal(up.status, 401);
    // /w/NAME without the slash goes to /w/NAME/ (the IDE's relative URLs need it).
    const bare = await curl(`${WEB}/w/ide1`);
    assert.equal(bare.status, 301);
  });

  test('an image without glibc is refused, saying so; an IDE LXR does not run is refused by name', async () => {
    const r = await unary(ws, ws.Create, { spec: { name: 'bb-ide', image: BUSYBOX, host: 'n1', ide: 'code-server' }, wait: true }, { deadline: Date.now() + 120_000 });
    assert.equal(r.workspace?.state, 'Failed');
    assert.equal(r.workspace?.reasonCode, 'LXR_UNSUPPORTED');
    assert.match(r.workspace?.reason ?? '', /image lab\.example\/lxr\/busybox:v1 has no glibc dynamic loader \(lib64\/ld-linux-x86-64\.so\.2\); code-server needs glibc: use a glibc-based image/);
    await unary(ws, ws.Delete, { name: 'bb-ide' });
    await assert.rejects(
      unary(ws, ws.Create, { spec: { name: 'vim1', image: DEBIAN, ide: 'vim' } }),
      grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'spec.ide', message: /"vim" is not an IDE LXR runs: code-server/ }),
    );
    // A workspace without an IDE: its link is the terminal's; asking for the IDE says why not.
    await unary(ws, ws.Create, { spec: { name: 'plain', image: BUSYBOX, command: ['sleep', '3600'], host: 'n1' }, wait: true }, { deadline: Date.now() + 120_000 });
    assert.match((await unary(ws, ws.Open, { name: 'plain' })).url, /\/w\/plain\/terminal\?link=/);
    await assert.rejects(
      unary(ws, ws.Open, { name: 'plain', page: 'ide' }),
      grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'page', message: /workspace plain has no IDE \(create it with --ide code-server\)/ }),
    );
    assert.equal((await get('plain')).state, 'Running');
    // With a person's credential: a workspace without an IDE sends its root to the terminal and has
    // nothing else; an unknown workspace is not found, for pages and WebSockets alike.
    const trust = new TrustClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    try {
      const bearer = ['-H', `Authorization: Bearer ${(await unary(trust, trust.CreateCredential, { name: 'ide-tester' })).token}`];
      const root = await run('nsenter', ['-t', String(lab.switch.pid), '-n', 'curl', '-sk', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', ...bearer, `${WEB}/w/plain/`]);
      assert.equal(root.stdout, `303 ${WEB}/w/plain/terminal`);
      assert.equal((await curl(`${WEB}/w/plain/static/x.js`, ...bearer)).status, 404);
      const missing = await curl(`${WEB}/w/nope/`, ...bearer);
      assert.equal(missing.status, 404);
      assert.match(missing.body, /nope/);
      const ws404 = ['-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13', '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='];
      assert.equal((await curl(`${WEB}/w/plain/stable-x`, ...bearer, ...ws404)).status, 404);
      assert.equal((await curl(`${WEB}/w/nope/stable-x`, ...bearer, ...ws404)).status, 404);
    } finally {
      trust.close();
    }
  });
});
