// Interactive exec the way a person uses it: lxrctl driven under a real
// pseudo-terminal (node-pty), against a workspace in a lab with a
// controller. Typed input reaches the shell, ctrl-c goes to the remote
// process (not lxrctl), a resize is seen by `stty size`, `tty` names a
// device that exists in the workspace, ctrl-p ctrl-q detaches and leaves the
// session running with the user's terminal restored, and attach resumes it
// and exits with the shell's status.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as pty from 'node-pty';
import { labDown, labRestartController, labUp, type LabState } from '../../cli/lab/lab.js';
import { repoRoot } from '../../proto/shared/api.js';
import { agentTestSkip, busyboxImage, importBusyboxOn } from '../helpers/agent.js';
import { writeOciLayout } from '../helpers/oci-image.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const LXRCTL = path.join(repoRoot(), 'bin', 'lxrctl');
const IMAGE = 'lab.example/lxr/busybox:v1';
/** ash's prompt; it may ask the terminal where the cursor is (ESC [6n) right after. */
const PROMPT = /# (\x1b\[6n)?$/;
/** A line end as it reaches us: the remote terminal's CR LF, our own terminal adding a CR. */
const NL = String.raw`\r+\n`;
const re = (s: string): RegExp => new RegExp(s.replaceAll('\\n', NL));

/** A program under a pseudo-terminal whose output can be waited for. */
class Terminal {
  readonly p: pty.IPty;
  out = '';
  exited: Promise<number>;

  constructor(script: string, env: NodeJS.ProcessEnv) {
    this.p = pty.spawn('/bin/sh', ['-c', script], { name: 'xterm', cols: 80, rows: 24, env: env as Record<string, string> });
    this.p.onData((d) => (this.out += d));
    this.exited = new Promise((resolve) => this.p.onExit((e) => resolve(e.exitCode)));
  }

  /** Resolves with the output once `re` matches what came after `from`. */
  async wait(re: RegExp, from = 0, ms = 20_000): Promise<RegExpExecArray> {
    for (let t = 0; t < ms; t += 50) {
      const m = re.exec(this.out.slice(from));
      if (m) return m;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${re} in ${JSON.stringify(this.out.slice(from).slice(-2000))}`);
  }

  type(s: string): number {
    const mark = this.out.length;
    this.p.write(s);
    return mark;
  }

  kill(): void {
    try {
      this.p.kill('SIGKILL');
    } catch {
      // gone
    }
  }
}

describe('lxrctl exec -it under a real terminal', { skip: agentTestSkip, timeout: 300_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let env: NodeJS.ProcessEnv;
  const terminals: Terminal[] = [];
  const term = (script: string): Terminal => {
    const t = new Terminal(script, env);
    terminals.push(t);
    return t;
  };

  before(async () => {
    work = await ownedTempDir('tty');
    dir = path.join(work, 'lab');
    lab = await labUp({ name: uniqueId('tty').toLowerCase(), dir, hosts: 1, controller: true });
    env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: work, TERM: 'xterm', LXR_SERVER: `unix://${lab.controller!.socket}`, LXR_CONFIG: path.join(work, 'config.json') };
    await importBusyboxOn(work, lab.hosts.map((h) => h.socket), IMAGE);
    await run(LXRCTL, ['create', 'tty1', '--image', IMAGE, '--', 'sleep', 'infinity'], { env });
  });

  after(async () => {
    for (const t of terminals) t.kill();
    if (dir) assert.deepEqual(await labDown(dir), []);
    if (work) await run('rm', ['-rf', work]);
  });

  test('typed input, ctrl-c, resize, tty; detach leaves it running and the terminal restored; attach resumes it', async () => {
    // The outer shell reports lxrctl's status and the terminal's settings after it.
    const t = term(`${LXRCTL} exec -it tty1 -- sh; echo "EXIT=$?"; stty -a`);
    await t.wait(PROMPT);
    let at = t.type('echo $((6*7))\r');
    await t.wait(re(String.raw`\n42\n`), at);

    at = t.type('sleep 100; echo after-sleep\r');
    await new Promise((r) => setTimeout(r, 300));
    t.type('\x03');
    await t.wait(PROMPT, at);
    assert.doesNotMatch(t.out.slice(at), re(String.raw`\nafter-sleep\n`), 'ctrl-c interrupted the remote sleep');
    assert.doesNotMatch(t.out.slice(at), /EXIT=/, 'and not lxrctl');

    at = t.type('stty size\r');
    await t.wait(re(String.raw`\n24 80\n`), at);
    t.p.resize(100, 30);
    await new Promise((r) => setTimeout(r, 300));
    at = t.type('stty size\r');
    await t.wait(re(String.raw`\n30 100\n`), at);

    at = t.type('tty; test -c "$(tty)" && echo is-a-device\r');
    await t.wait(re(String.raw`\/dev\/pts\/\d+\nis-a-device\n`), at);

    at = t.type('cd /tmp; echo marker > here; echo before-detach\r');
    await t.wait(re(String.raw`\nbefore-detach\n`), at);
    at = t.type('\x10\x11');
    const m = await t.wait(/detached from session (tty1\/[A-Za-z0-9_-]+) of tty1; lxrctl attach \1 resumes it/, at);
    const id = m[1]!;
    await t.wait(re(String.raw`EXIT=0\n`), at);
    await t.exited;
    const settings = t.out.slice(t.out.indexOf('EXIT=0'));
    assert.match(settings, /[^-]icanon/, `the terminal is back in canonical mode: ${settings}`);
    assert.match(settings, /[^-]echo /, 'and echoes again');

    const ls = (await run(LXRCTL, ['exec', 'ls', 'tty1', '-o', 'json'], { env })).stdout;
    const s = (JSON.parse(ls) as Array<{ id: string; state: string; tty: boolean; attachedClients: number }>).find((x) => x.id === id)!;
    assert.deepEqual([s.state, s.tty, s.attachedClients], ['running', true, 0]);

    // Attach resumes where this machine left it: nothing shown twice, the shell still in /tmp.
    const a = term(`${LXRCTL} attach ${id}; echo "EXIT=$?"`);
    await new Promise((r) => setTimeout(r, 500));
    at = a.type('pwd; cat here\r');
    await a.wait(re(String.raw`\/tmp\nmarker\n`), at);
    assert.doesNotMatch(a.out, /before-detach/, 'output already shown is not replayed');
    at = a.type('exit 3\r');
    await a.wait(re(String.raw`EXIT=3\n`), at);
    assert.equal(await a.exited, 0);
  });

  test('lxrctl killed while attached leaves the session running and the terminal restored', async () => {
    const t = term(`${LXRCTL} exec -it tty1 -- sh; echo "EXIT=$?"; stty -a`);
    await t.wait(PROMPT);
    // lxrctl is the pseudo-terminal's shell's child (by pid, from /proc).
    const child = Number(readFileSync(`/proc/${t.p.pid}/task/${t.p.pid}/children`, 'utf8').trim().split(' ')[0]);
    assert.ok(child > 0);
    const at = t.out.length;
    process.kill(child, 'SIGTERM');
    const m = await t.wait(/SIGTERM: left session (tty1\/[A-Za-z0-9_-]+) of tty1 running; lxrctl attach \1 resumes it/, at);
    await t.wait(re(String.raw`EXIT=143\n`), at);
    await t.exited;
    const settings = t.out.slice(t.out.indexOf('EXIT=143'));
    assert.match(settings, /[^-]icanon/, 'the terminal is back in canonical mode');
    const ls = JSON.parse((await run(LXRCTL, ['exec', 'ls', 'tty1', '-o', 'json'], { env })).stdout) as Array<{ id: string; state: string }>;
    assert.equal(ls.find((s) => s.id === m[1])?.state, 'running');
  });

  test('the controller killed under an interactive session: lxrctl says so, restores the terminal, and the session is attached again after', async () => {
    const t = term(`${LXRCTL} exec -it tty1 -- sh; echo "EXIT=$?"; stty -a`);
    await t.wait(PROMPT);
    let at = t.type('echo kept-$((2+3)) > /tmp/during\r');
    await t.wait(PROMPT, at);
    at = t.out.length;
    await labRestartController(dir, 'SIGKILL');
    const m = await t.wait(/the session's stream broke .*\(LXR_UNAVAILABLE\); lxrctl attach (tty1\/[A-Za-z0-9_-]+) resumes it/, at);
    await t.wait(re(String.raw`EXIT=3\n`), at);
    await t.exited;
    assert.match(t.out.slice(t.out.indexOf('EXIT=3')), /[^-]icanon/, 'the terminal is back in canonical mode');
    // The session lived on its host: once the restarted controller has the host Ready again
    // (its first heartbeat), the session is attached again through it.
    for (let i = 0; i < 100; i++) {
      const hosts = await run(LXRCTL, ['hosts', '-o', 'json'], { env }).then((r) => r.stdout, () => '[]');
      if ((JSON.parse(hosts) as Array<{ state: string }>).every((h) => h.state === 'Ready') && hosts !== '[]\n') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const a = term(`${LXRCTL} attach ${m[1]}; echo "EXIT=$?"`);
    let seen = false;
    for (let i = 0; i < 10 && !seen; i++) {
      // Typed again until the shell answers: the first keys may beat the stream's set-up.
      at = a.type('cat /tmp/during\r');
      seen = await a.wait(re(String.raw`kept-5\n`), at, 3000).then(() => true, () => false);
    }
    assert.ok(seen, `the attached shell answers: ${JSON.stringify(a.out.slice(-500))}`);
    at = a.type('exit 4\r');
    await a.wait(re(String.raw`EXIT=4\n`), at);
  });

  test('images pull on a terminal draws one line per layer and host, redrawn in place', async () => {
    const layout = path.join(work, 'layout');
    await writeOciLayout(layout, await busyboxImage(work), 'v1');
    await run('nsenter', ['-t', String(lab.switch.pid), '-n', 'skopeo', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:v1`, 'docker://198.18.0.254:5000/lxr/tty:v1']);
    const t = term(`${LXRCTL} images pull 198.18.0.254:5000/lxr/tty:v1; echo "EXIT=$?"`);
    await t.wait(/EXIT=0/);
    // Each redraw moves the cursor back up over the lines and clears each before writing it.
    assert.match(t.out, /\x1b\[2Kn1 [0-9a-f]{12} done/);
    assert.match(t.out, /pulled n1: 198\.18\.0\.254:5000\/lxr\/tty:v1 sha256:[0-9a-f]{64}/);
    // The image has one layer and the lab one host: every redraw is of that one line.
    assert.equal(new Set(t.out.match(/\x1b\[2Kn1 [0-9a-f]{12}/g)).size, 1);
  });

  test('-t without -i, and -i without a terminal on the remote side', async () => {
    const t = term(`${LXRCTL} exec -t tty1 -- sh -c 'test -t 0 && echo stdin-tty; test -t 1 && echo stdout-tty; stty size'; echo "EXIT=$?"`);
    await t.wait(re(String.raw`stdout-tty\n24 80\nEXIT=0`));
    const i = term(`echo piped | ${LXRCTL} exec -i tty1 -- sh -c 'cat; test -t 1 || echo no-tty'; echo "EXIT=$?"`);
    await i.wait(re(String.raw`piped\nno-tty\nEXIT=0`));
  });
});
