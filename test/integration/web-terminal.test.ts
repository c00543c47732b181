// The web terminal and forwarded ports (issue 9, first pieces), in a lab of
// two hosts whose controller serves HTTPS (--web-listen), with headless
// Chromium (Debian's, driven by playwright-core) running inside the lab's
// network namespace: a link from `lxrctl open` opens a shell in a workspace
// on a host; a typed command shows its output; a refresh shows the same
// session; a port the workspace listens on serves its page at
// /w/NAME/ports/PORT/ and through `lxrctl port-forward`; requests without
// a credential for that workspace are refused.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { chromium, type Browser } from 'playwright-core';
import { CONTROLLER_WEB_PORT, labDown, labUp, SWITCH_ADDRESS, type LabState } from '../../cli/lab/lab.js';
import { TrustClient, unary, WorkspacesClient } from '../../proto/shared/api.js';
import { WebLinks } from '../../controller/web/web-links.js';
import { agentTestSkip, grpcErr, importBusyboxOn } from '../helpers/agent.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const image = 'lab.example/lxr/busybox:v1';
const CHROMIUM = '/usr/bin/chromium';
const WEB = `https://${SWITCH_ADDRESS}:${CONTROLLER_WEB_PORT}`;

describe('the web terminal in the lab', { skip: agentTestSkip, timeout: 600_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let ws: WorkspacesClient;
  let browser: Browser | undefined;

  /** curl from inside the lab: status and body. */
  const curl = async (url: string, ...args: string[]): Promise<{ status: number; body: string; headers: string }> => {
    const { stdout } = await run('nsenter', ['-t', String(lab.switch.pid), '-n', 'curl', '-sk', '-D', '-', '--max-time', '10', ...args, url], { maxBuffer: 8 << 20 });
    const [headers, ...body] = stdout.split('\r\n\r\n');
    return { status: Number(/^HTTP\/\S+ (\d+)/.exec(headers!)?.[1]), headers: headers!, body: body.join('\r\n\r\n') };
  };
  const open = async (name: string): Promise<string> => (await unary(ws, ws.Open, { name })).url;

  before(async () => {
    work = await ownedTempDir('webterm');
    dir = path.join(work, 'lab');
    lab = await labUp({ name: uniqueId('w').toLowerCase().slice(0, 20), dir, hosts: 2, controller: true });
    ws = new WorkspacesClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    await importBusyboxOn(work, lab.hosts.map((h) => h.socket), image);
    const site = ['sh', '-c', 'mkdir -p /www && echo "<h1>port page $((40+2))</h1>" > /www/index.html && exec busybox httpd -f -p 8080 -h /www'];
    for (const [name, host, command] of [['term1', 'n2', ['sleep', '3600']], ['term2', 'n1', ['sleep', '3600']], ['site', 'n1', site]] as const) {
      await unary(ws, ws.Create, { spec: { name, image, command: [...command], host }, wait: true }, { deadline: Date.now() + 120_000 });
    }
    // Chromium runs in the lab's network namespace, where the controller's address is.
    const wrapper = path.join(work, 'chromium-in-lab.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec nsenter -t ${lab.switch.pid} -n ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({ executablePath: wrapper, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  });

  after(async () => {
    await browser?.close();
    ws?.close();
    if (dir) assert.deepEqual(await labDown(dir), []);
    if (work) await run('rm', ['-rf', work]);
  });

  test('a link opens a shell in the workspace on its host; typed commands show their output; a refresh shows the same session', async () => {
    const ctx = await browser!.newContext({ ignoreHTTPSErrors: true });
    try {
      const page = await ctx.newPage();
      const url = await open('term1');
      assert.match(url, new RegExp(`^${WEB.replace(/\./g, '\\.')}/w/term1/terminal\\?link=\\d+\\.[A-Za-z0-9_-]{43}$`));
      await page.goto(url);
      // The link was traded for a cookie and left the address bar.
      assert.equal(page.url(), `${WEB}/w/term1/terminal`);
      await page.waitForSelector('body[data-session]', { timeout: 20_000 });
      const session = await page.getAttribute('body', 'data-session');
      const screen = (): Promise<string> => page.evaluate(() => document.querySelector('.xterm-rows')?.textContent ?? '');
      const waitScreen = (s: string) => page.waitForFunction((want) => (document.querySelector('.xterm-rows')?.textContent ?? '').includes(want), s, { timeout: 15_000 });
      await page.locator('.xterm-helper-textarea').focus();
      await page.keyboard.type('echo "sum=$((6*7)) on $(hostname)"\n');
      await waitScreen('sum=42 on term1');
      // The session is one of the workspace's exec sessions, as lxrctl exec ls would list it.
      const listed = await unary(ws, ws.ListSessions, { container: 'term1' });
      assert.ok(listed.sessions.some((s) => s.id.endsWith(session!)), JSON.stringify(listed.sessions));

      await page.reload();
      await page.waitForSelector('body[data-session]', { timeout: 20_000 });
      assert.equal(await page.getAttribute('body', 'data-session'), session, 'the same session after a refresh');
      await waitScreen('sum=42 on term1');
      await page.locator('.xterm-helper-textarea').focus();
      await page.keyboard.type('echo again-$((1+1))\n');
      await waitScreen('again-2');
      const shown = await screen();
      assert.ok(shown.indexOf('sum=42') >= 0 && shown.indexOf('sum=42') < shown.indexOf('again-2'), shown);
    } finally {
      await ctx.close();
    }
  });

  test('nothing is served without a credential for that workspace', async () => {
    for (const p of ['/w/term1/terminal', '/w/term1/assets/xterm.mjs']) {
      const r = await curl(`${WEB}${p}`);
      assert.equal(r.status, 401, p);
      assert.match(r.body, /no link or credential came \(lxrctl open term1 prints a link\)/);
    }
    // The WebSocket is refused before any upgrade.
    const up = await curl(`${WEB}/w/term1/terminal/ws`, '-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13', '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==');
    assert.equal(up.status, 401);
    // A link is for one workspace, cannot be altered, and expires.
    const link = new URL((await open('term1')).replace(WEB, 'https://x'));
    const token = link.searchParams.get('link')!;
    assert.equal((await curl(`${WEB}/w/term2/terminal?link=${token}`)).status, 401);
    const altered = await curl(`${WEB}/w/term1/terminal?link=${token.replace(/^\d/, (d) => String((Number(d) + 1) % 10))}`);
    assert.equal(altered.status, 401);
    assert.match(altered.body, /not for workspace term1 \(or was altered\)/);
    const links = WebLinks.withKey(Buffer.from(readFileSync(path.join(dir, 'controller', 'state', 'pki', 'web-link.key'), 'utf8').trim(), 'hex'));
    const old = await curl(`${WEB}/w/term1/terminal?link=${links.sign('link', 'term1', 300, Date.now() - 3600_000)}`);
    assert.equal(old.status, 401);
    assert.match(old.body, /the link expired at .*lxrctl open term1 makes a new one/);
    assert.equal((await curl(`${WEB}/w/term1/terminal?link=garbage`)).status, 401);
    // The cookie a good link gives is for that workspace only.
    const good = await curl(`${WEB}/w/term1/terminal?link=${token}`);
    assert.equal(good.status, 303);
    const cookie = /set-cookie: (lxr_w=[^;]+); Path=\/w\/term1\/;.*HttpOnly; Secure; SameSite=Strict/i.exec(good.headers)?.[1];
    assert.ok(cookie, good.headers);
    assert.equal((await curl(`${WEB}/w/term1/terminal`, '-b', cookie)).status, 200);
    assert.equal((await curl(`${WEB}/w/term2/terminal`, '-b', cookie)).status, 401);
    // A person's bearer token is a credential too; a revoked one is not.
    const trust = new TrustClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    try {
      const tok = (await unary(trust, trust.CreateCredential, { name: 'webber' })).token;
      assert.equal((await curl(`${WEB}/w/term2/terminal`, '-H', `Authorization: Bearer ${tok}`)).status, 200);
      await unary(trust, trust.RevokeCredential, { name: 'webber' });
      const revoked = await curl(`${WEB}/w/term2/terminal`, '-H', `Authorization: Bearer ${tok}`);
      assert.equal(revoked.status, 401);
      assert.match(revoked.body, /revoked/);
    } finally {
      trust.close();
    }
  });

  test('links: only for workspaces that exist, and only for pages there are', async () => {
    await assert.rejects(unary(ws, ws.Open, { name: 'nope' }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
    await assert.rejects(unary(ws, ws.Open, { name: 'term1', page: 'ide' }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'page' }));
    await assert.rejects(unary(ws, ws.Open, { name: 'Bad_Name' }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'name' }));
    assert.equal((await curl(`${WEB}/elsewhere`)).status, 404);
    // lxrctl open prints the link, and on a desktop (DISPLAY and xdg-open) opens it too.
    const lxrctl = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..', 'bin', 'lxrctl');
    const fakeBin = path.join(work, 'fake-desktop');
    await run('mkdir', ['-p', fakeBin]);
    writeFileSync(path.join(fakeBin, 'xdg-open'), `#!/bin/sh\necho "$1" > ${fakeBin}/opened\n`);
    chmodSync(path.join(fakeBin, 'xdg-open'), 0o755);
    const env = { ...process.env, LXR_SERVER: `unix://${lab.controller!.socket}`, LXR_CONFIG: path.join(work, 'open-config.json') };
    const printed = await run(lxrctl, ['open', 'term1'], { env: { ...env, DISPLAY: '' } });
    assert.match(printed.stdout, /^https:\/\/198\.18\.0\.254:7443\/w\/term1\/terminal\?link=/);
    assert.match(printed.stderr, /open it in a browser before/);
    const opened = await run(lxrctl, ['open', 'term1'], { env: { ...env, DISPLAY: ':99', PATH: `${fakeBin}:${process.env.PATH}` } });
    assert.match(opened.stderr, /opened in the browser/);
    let got = '';
    for (let i = 0; i < 50 && !got; i++) {
      got = await run('cat', [path.join(fakeBin, 'opened')]).then((r) => r.stdout.trim(), () => '');
      if (!got) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(got, opened.stdout.trim());
  });

  test('a port the workspace listens on serves its page at /w/NAME/ports/PORT/, only with a credential', async () => {
    const ctx = await browser!.newContext({ ignoreHTTPSErrors: true });
    try {
      const page = await ctx.newPage();
      await page.goto(await open('site'));
      // The cookie of /w/site/ also opens the workspace's ports; the page comes through the host's agent.
      await page.goto(`${WEB}/w/site/ports/8080/`);
      assert.equal((await page.textContent('h1'))?.trim(), 'port page 42');
      const noSlash = await page.goto(`${WEB}/w/site/ports/8080`);
      assert.equal(page.url(), `${WEB}/w/site/ports/8080/`);
      assert.equal(noSlash?.status(), 200);
      const closed = await page.goto(`${WEB}/w/site/ports/9999/`);
      assert.equal(closed?.status(), 502);
      assert.match((await page.textContent('body')) ?? '', /nothing answers on port 9999 of "site"/);
      // An app's own ?link= is the app's (links are only for /w/NAME/ and its terminal), and any method goes through.
      const own = await page.goto(`${WEB}/w/site/ports/8080/?link=app-parameter`);
      assert.equal(own?.status(), 200);
      assert.equal((await page.textContent('h1'))?.trim(), 'port page 42');
      const posted = await page.evaluate(async (u) => {
        const r = await fetch(u, { method: 'POST', body: 'x=1' });
        return { status: r.status, body: await r.text() };
      }, `${WEB}/w/site/ports/8080/index.html`);
      // 501 is busybox httpd's own answer to a POST of a file: the request reached the app.
      assert.equal(posted.status, 501, posted.body);
      assert.doesNotMatch(posted.body, /only GET here/);
    } finally {
      await ctx.close();
    }
    const anonymous = await curl(`${WEB}/w/site/ports/8080/`);
    assert.equal(anonymous.status, 401);
    assert.doesNotMatch(anonymous.body, /port page/);
  });

  test('lxrctl port-forward: a local port reaches the workspace\'s port; bad ports and stopped workspaces are refused', async () => {
    const lxrctl = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..', 'bin', 'lxrctl');
    const env = { ...process.env, LXR_SERVER: `unix://${lab.controller!.socket}`, LXR_CONFIG: path.join(work, 'pf-config.json') };
    const child = spawn(lxrctl, ['port-forward', 'site', '0:8080'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(out);
        });
        child.once('exit', (c) => reject(new Error(`lxrctl port-forward exited ${c}`)));
      });
      const m = /^forwarding 127\.0\.0\.1:(\d+) -> site:8080/.exec(line);
      assert.ok(m, line);
      for (let i = 0; i < 3; i++) {
        const body = await (await fetch(`http://127.0.0.1:${m[1]}/`)).text();
        assert.match(body, /port page 42/);
      }
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    const bad = async (args: string[], code: number, msg: RegExp) => {
      const r = await run(lxrctl, args, { env }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stderr, msg);
    };
    await bad(['port-forward', 'site', '8080:0'], 2, /ports are 1-65535/);
    await bad(['port-forward', 'site', 'http'], 2, /"http" is not \[LOCAL:\]REMOTE/);
    await bad(['port-forward', 'nope', '8080'], 4, /not found/);
    await unary(ws, ws.Stop, { name: 'term2', graceSeconds: 1 }, { deadline: Date.now() + 60_000 });
    await bad(['port-forward', 'term2', '8080'], 2, /workspace term2 is Stopped: only a running workspace has ports/);
    // The web side refuses a stopped workspace's ports too, saying why.
    const opened = await curl(`${WEB}/w/term2/terminal?link=${new URL(await open('term2')).searchParams.get('link')}`);
    const cookie = /set-cookie: (lxr_w=[^;]+);/i.exec(opened.headers)![1]!;
    const stopped = await curl(`${WEB}/w/term2/ports/8080/`, '-b', cookie);
    assert.equal(stopped.status, 502);
    assert.match(stopped.body, /forward a port of.*term2.*Stopped|term2.*Stopped.*forward a port of/);
  });
});
