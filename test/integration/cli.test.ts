// lxrctl, black box, as people use it: every command run as a process
// (bin/lxrctl) against a two-host lab with a controller that `lxrctl lab up
// --controller` brought up, checking output, exit codes and error messages,
// the bad inputs as carefully as the good ones: unknown workspace, invalid
// name, server down, image not found, control characters from the server.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { labDown, readLab, type LabState } from '../../cli/lab/lab.js';
import { repoRoot } from '../../proto/shared/api.js';
import { agentTestSkip, busyboxImage } from '../helpers/agent.js';
import { writeOciLayout } from '../helpers/oci-image.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const LXRCTL = path.join(repoRoot(), 'bin', 'lxrctl');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Result {
  code: number;
  out: string;
  err: string;
}

describe('lxrctl against a lab with a controller', { skip: agentTestSkip, timeout: 900_000 }, () => {
  let work: string;
  let dir: string;
  let name: string;
  let env: NodeJS.ProcessEnv;
  let lab: LabState;

  /** Runs lxrctl; its exit code and output (never throws). */
  const lxrctl = (args: string[], o: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> =>
    new Promise((resolve) => {
      const p = spawn(LXRCTL, args, { env: { ...env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      const t = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 120_000);
      p.on('close', (code, sig) => {
        clearTimeout(t);
        resolve({ code: code ?? 128 + (sig === 'SIGKILL' ? 9 : 15), out, err });
      });
      p.stdin.end(o.input ?? '');
    });
  const ok = async (args: string[], o: Parameters<typeof lxrctl>[1] = {}): Promise<string> => {
    const r = await lxrctl(args, o);
    assert.equal(r.code, 0, `lxrctl ${args.join(' ')}: ${r.err}`);
    return r.out;
  };
  /** A failure: its exit code, one line on stderr matching `msg`, and nothing on stdout. */
  const fails = async (args: string[], code: number, msg: RegExp, o: Parameters<typeof lxrctl>[1] = {}): Promise<Result> => {
    const r = await lxrctl(args, o);
    assert.equal(r.code, code, `lxrctl ${args.join(' ')}: exit ${r.code}; ${r.err}`);
    assert.match(r.err, msg, args.join(' '));
    assert.match(r.err, /^lxrctl: .*\(LXR_[A-Z_]+\)/, `one line with the reason: ${r.err}`);
    assert.equal(r.out, '', `nothing on stdout: ${r.out}`);
    return r;
  };

  before(async () => {
    work = await ownedTempDir('cli');
    dir = path.join(work, 'lab');
    name = uniqueId('cli').toLowerCase();
    env = { PATH: `${path.dirname(LXRCTL)}:${process.env['PATH']}`, HOME: work, LXR_CONFIG: path.join(work, 'lxr', 'config.json') };
    const up = await lxrctl(['lab', 'up', '--controller', '--hosts', '2', '--name', name, '--dir', dir], { timeoutMs: 180_000 });
    lab = readLab(dir)!;
    assert.equal(up.code, 0, up.err);
    assert.match(up.out, new RegExp(`lxrctl now uses context lab-${name}`));
  });

  after(async () => {
    if (dir && existsSync(dir)) assert.deepEqual(await labDown(dir), []);
    if (work) await run('rm', ['-rf', work]);
  });

  test('lab up made a context for its controller and made it current', async () => {
    const ctxs = await ok(['config', 'get-contexts']);
    assert.match(ctxs, new RegExp(`^\\*\\s+lab-${name}\\s+unix://${dir}/controller/controller\\.sock`, 'm'));
    assert.equal(await ok(['config', 'current-context']), `lab-${name}\n`);
    assert.equal(await ok(['version', '--client']), 'lxrctl 0.1.0\n');
    assert.equal(await ok(['--version']), 'lxrctl 0.1.0\n');
    const st = await ok(['lab', 'status', '--name', name, '--dir', dir]);
    assert.match(st, new RegExp(`^lab ${name} \\(switch up; registry 198\\.18\\.0\\.254:5000 up; controller unix://.* up\\)$`, 'm'));
    assert.match(st, /^  n1\t198\.18\.0\.1\t198\.19\.\d+\.0\/24\tup\t/m);
    await fails(['lab', 'status', '--name', 'nolab', '--dir', path.join(work, 'nolab')], 4, /no lab named "nolab"/);
    // The API example of the README, a plain grpc-js client, against this controller.
    const ex = await run(process.execPath, [path.join(repoRoot(), 'examples', 'list-workspaces.mjs'), `unix://${dir}/controller/controller.sock`]);
    assert.match(ex.stdout, /n1/);
    assert.match(ex.stdout, /n2/);
    const v = await ok(['version']);
    assert.match(v, /^lxrctl \d+\.\d+\.\d+\ncontroller unix:\/\/.* \(from context lab-.*\): SERVING\n$/);
  });

  test('hosts ls, inspect, cordon, uncordon, drain', async () => {
    const ls = await ok(['hosts', 'ls']);
    const lines = ls.trim().split('\n');
    assert.match(lines[0]!, /^NAME\s+STATE\s+ADDRESS\s+SUBNET\s+CPUS\s+MEMORY\s+WORKSPACES\s+AGE$/);
    assert.match(lines[1]!, /^n1\s+Ready\s+198\.18\.0\.1:7070\s+198\.19\.\d+\.0\/24\s+0\/\d+\s+/);
    assert.match(lines[2]!, /^n2\s+Ready\s+198\.18\.0\.2:7070\s+/);
    assert.deepEqual(JSON.parse(await ok(['hosts', '-o', 'json'])).map((h: { name: string }) => h.name), ['n1', 'n2']);
    assert.match(await ok(['hosts', 'ls', '-o', 'wide']), /ARCH\s+VERSION\s+LAST HEARTBEAT\s+LABELS/);
    assert.equal(JSON.parse(await ok(['hosts', 'inspect', 'n2'])).address, '198.18.0.2:7070');
    assert.equal(await ok(['hosts', 'cordon', 'n2']), 'n2 cordoned\n');
    assert.match(await ok(['hosts']), /^n2\s+Ready,Cordoned\s/m);
    assert.equal(await ok(['hosts', 'uncordon', 'n2']), 'n2 uncordoned\n');
    assert.match(await ok(['hosts']), /^n2\s+Ready\s/m);
    assert.equal(await ok(['hosts', 'drain', 'n2']), 'n2 drained; no workspace was running\n');
    assert.match(await ok(['hosts']), /^n2\s+Ready,Cordoned\s/m, 'drain cordons');
    await ok(['hosts', 'uncordon', 'n2']);
    await fails(['hosts', 'rm', 'n9'], 4, /host "n9" not found/);
    await fails(['hosts', 'drain', 'n9'], 4, /host "n9" not found/);
    await fails(['hosts', 'cordon', 'n9'], 4, /host "n9" not found.*; lxrctl hosts ls lists the hosts/);
    await fails(['hosts', 'inspect', 'N9'], 2, /host name "N9" is not valid/);
  });

  test('images import, ls, pull with progress per layer, rm; missing files and images', async () => {
    const archive = path.join(work, 'busybox.tar');
    await run('bash', [path.join(repoRoot(), 'scripts', 'busybox-image.sh'), archive, 'busybox:latest']);
    const imp = await ok(['images', 'import', archive]);
    assert.match(imp, /^n1: imported docker\.io\/library\/busybox:latest sha256:[0-9a-f]{64}$/m);
    assert.match(imp, /^n2: imported docker\.io\/library\/busybox:latest sha256:[0-9a-f]{64}$/m);
    // A second image only on n2, under another name.
    assert.match(await ok(['images', 'import', archive, '--host', 'n2', '--repository', 'x']), /^n2: imported/);
    const ls = await ok(['images', 'ls']);
    assert.match(ls, /^HOST\s+IMAGE\s+DIGEST\s+SIZE\s+AGE$/m);
    assert.match(ls, /^n1\s+docker\.io\/library\/busybox:latest\s+[0-9a-f]{12}\s+\S+\s+\d+s$/m);
    assert.match(ls, /^n2\s+docker\.io\/library\/busybox:latest\s/m);
    assert.equal(JSON.parse(await ok(['images', 'ls', '--host', 'n1', '-o', 'json'])).images.every((i: { host: string }) => i.host === 'n1'), true);

    // Pull: an image pushed into the lab's registry (skopeo runs in the lab's namespace).
    const layout = path.join(work, 'layout');
    await writeOciLayout(layout, await busyboxImage(work), 'v1');
    await run('nsenter', ['-t', String(lab.switch.pid), '-n', 'skopeo', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:v1`, 'docker://198.18.0.254:5000/lxr/pulled:v1']);
    const pull = await ok(['images', 'pull', '198.18.0.254:5000/lxr/pulled:v1']);
    // Not a terminal: one line per layer and host each time its state changes.
    assert.match(pull, /^n1 [0-9a-f]{12} (waiting|downloading|verifying|extracting|done|exists)/m);
    assert.match(pull, /^n2 [0-9a-f]{12} /m);
    assert.match(pull, /^n1 [0-9a-f]{12} done/m);
    assert.match(pull, /^pulled n1: 198\.18\.0\.254:5000\/lxr\/pulled:v1 sha256:/m);
    assert.match(pull, /^pulled n2: 198\.18\.0\.254:5000\/lxr\/pulled:v1 sha256:/m);
    await fails(['images', 'pull', '198.18.0.254:5000/lxr/nope:v1', '--host', 'n1'], 4, /host n1: .*not found.*; lxrctl images ls lists the images/);
    await fails(['images', 'pull', 'busybox', '--host', 'n7'], 4, /host "n7" not found/);
    assert.match(await ok(['images', 'rm', '198.18.0.254:5000/lxr/pulled:v1', '--host', 'n1']), /^n1: untagged 198\.18\.0\.254:5000\/lxr\/pulled:v1/);
    assert.doesNotMatch(await ok(['images', 'ls', '--host', 'n1']), /pulled/);
    assert.match(await ok(['images', 'ls', '--host', 'n2']), /pulled/);
    await fails(['images', 'rm', '198.18.0.254:5000/lxr/never:v1'], 4, /not found/);

    await fails(['images', 'import', path.join(work, 'missing.tar')], 4, /file .*missing\.tar does not exist/);
    writeFileSync(path.join(work, 'empty.tar'), '');
    await fails(['images', 'import', path.join(work, 'empty.tar')], 2, /empty\.tar is empty/);
    await fails(['images', 'import', work], 2, /is not a file/);
    writeFileSync(path.join(work, 'garbage.tar'), 'this is not a tar archive at all'.repeat(100));
    await fails(['images', 'import', path.join(work, 'garbage.tar')], 2, /^lxrctl: host n\d: .*\(LXR_INVALID_(ARGUMENT|SPEC)\)/);
    // From stdin, to one host.
    assert.match(await ok(['images', 'import', '-', '--host', 'n1', '--repository', 'fromstdin'], { input: readFileSync(archive) }), /^n1: imported /m);
  });

  test('create, ps, inspect with every flag; idempotent create; bad names never reach the server', async () => {
    const c = await ok(['create', 'ws1', '--image', 'busybox', '--cpus', '0.5', '-m', '64m', '-e', 'A=1', '-e', 'B=two words', '-p', '18080:80', '--label', 'team=dev', '--host', 'n1', '--', 'sh', '-c', 'echo started; echo oops >&2; sleep 3600']);
    assert.match(c, /^ws1 is running on host n1, address 198\.19\.\d+\.\d+\n$/);
    assert.match(await ok(['create', 'ws1', '--image', 'busybox', '--cpus', '0.5', '-m', '64m', '-e', 'A=1', '-e', 'B=two words', '-p', '18080:80', '--label', 'team=dev', '--host', 'n1', '--', 'sh', '-c', 'echo started; echo oops >&2; sleep 3600']), /^ws1 \(already there\) is running/);
    await fails(['create', 'ws1', '--image', 'busybox'], 1, /already exists.*\(LXR_ALREADY_EXISTS\); choose another name, or remove it first \(lxrctl rm -f ws1\)/);
    await ok(['create', 'ws2', '--image', 'busybox', '-d']);

    const ps = await ok(['ps']);
    const [head, ...rows] = ps.trim().split('\n');
    assert.match(head!, /^NAME\s+HOST\s+IP\s+STATE\s+IMAGE\s+AGE$/);
    assert.match(rows.find((r) => r.startsWith('ws1'))!, /^ws1\s+n1\s+198\.19\.\d+\.\d+\s+Running\s+busybox\s+\d+s$/);
    assert.match(ps, /^ws2\s+n\d\s/m);
    const wide = await ok(['ps', '-o', 'wide']);
    assert.match(wide, /CPUS\s+MEMORY\s+PORTS\s+UID\s+REASON/);
    assert.match(wide, /^ws1 .* 0\.5\s+64MiB\s+18080->80\/tcp\s+[0-9a-f-]{36}/m);
    const json = JSON.parse(await ok(['ps', '-o', 'json'])) as Array<{ spec: { name: string; env: string[]; labels: Record<string, string> }; state: string }>;
    const ws1 = json.find((w) => w.spec.name === 'ws1')!;
    assert.deepEqual(ws1.spec.env, ['A=1', 'B=two words']);
    assert.deepEqual(ws1.spec.labels, { team: 'dev' });
    const yaml = await ok(['ps', '-o', 'yaml']);
    assert.match(yaml, /^- spec:\n(    .*\n)*?    name: ws1$/m);
    assert.match(yaml, /^  state: Running$/m);
    assert.deepEqual((await ok(['ps', '-q'])).trim().split('\n').sort(), ['ws1', 'ws2']);
    const insp = JSON.parse(await ok(['inspect', 'ws1']));
    assert.equal(insp.spec.memoryBytes, 64 << 20);
    assert.equal(insp.host, 'n1');
    assert.match(await ok(['inspect', 'ws1', '-o', 'yaml']), /^state: Running$/m);

    await fails(['inspect', 'nope'], 4, /workspace "nope" not found \(LXR_NOT_FOUND\); lxrctl ps -a lists the workspaces/);
    // Invalid names are refused before any request: the server does not even exist here.
    for (const args of [['create', 'Bad_Name', '--image', 'busybox'], ['inspect', 'UPPER'], ['exec', 'a.b', '--', 'ls'], ['rm', 'ws1', 'no/slash'], ['logs', 'a'.repeat(64)]]) {
      await fails(args, 2, /name ".*" is not valid/, { env: { LXR_SERVER: 'unix:///nonexistent/controller.sock' } });
    }
  });

  test('exec: the remote exit status, stdout and stderr apart, stdin, env, workdir, user', async () => {
    const r = await lxrctl(['exec', 'ws1', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.deepEqual([r.code, r.out, r.err], [7, 'out\n', 'err\n']);
    const nf = await lxrctl(['exec', 'ws1', '--', 'no-such-command']);
    assert.equal(nf.code, 127);
    const sig = await lxrctl(['exec', 'ws1', '--', 'sh', '-c', 'kill -TERM $$']);
    assert.equal(sig.code, 143);
    assert.equal(await ok(['exec', '-i', 'ws1', '--', 'sh', '-c', 'tr a-z A-Z; echo done'], { input: 'piped\nlines\n' }), 'PIPED\nLINES\ndone\n');
    assert.equal(await ok(['exec', 'ws1', '--', 'cat'], { input: 'ignored' }), '', 'without -i the command gets no input');
    assert.equal(await ok(['exec', '-e', 'X=from-flag', '-w', '/tmp', '-u', '65534', 'ws1', '--', 'sh', '-c', 'echo $X $(pwd) $(id -u); echo $A']), 'from-flag /tmp 65534\n1\n');
    assert.equal(await ok(['exec', 'ws1', 'echo', 'no', 'dashes']), 'no dashes\n', 'docker\'s form without --');
    // 2 MiB through stdout, intact.
    const big = await ok(['exec', 'ws1', '--', 'sh', '-c', 'head -c 2097152 /dev/zero | tr "\\0" x']);
    assert.equal(big.length, 2 << 20);
    await fails(['exec', 'nope', '--', 'ls'], 4, /workspace "nope" not found/);
    await fails(['exec', 'ws1'], 2, /needs a command/);
  });

  test('exec ls lists sessions with control characters escaped; attach replays an ended session', async () => {
    await ok(['exec', 'ws1', '--', 'sh', '-c', 'echo marker; true', '\u001b]0;pwned\u0007\u001b[2J']);
    const ls = await ok(['exec', 'ls', 'ws1']);
    assert.match(ls, /^ID\s+COMMAND\s+TTY\s+STATE\s+CLIENTS\s+STARTED\s+IDLE$/m);
    assert.doesNotMatch(ls, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, 'no raw control character reaches the terminal');
    assert.match(ls, /\\e\]0;pwned\\x07\\e\[2J/);
    const sessions = JSON.parse(await ok(['exec', 'ls', 'ws1', '-o', 'json'])) as Array<{ id: string; args: string[] }>;
    const s = sessions.find((x) => x.args.includes('echo marker; true'))!;
    assert.match(s.id, /^ws1\//);
    const a = await lxrctl(['attach', s.id]);
    assert.deepEqual([a.code, a.out], [0, 'marker\n']);
    assert.equal((await lxrctl(['attach', s.id, '--offset', '3'])).out, 'ker\n');
    await fails(['attach', 'ws1/doesnotexist'], 4, /session ws1\/doesnotexist not found/);
    await fails(['attach', 'justaword'], 2, /is not WORKSPACE\/ID/);
    await fails(['exec', 'ls', 'nope'], 4, /not found/);
  });

  test('logs: stdout and stderr, --tail, --since, -t, -f', async () => {
    const r = await lxrctl(['logs', 'ws1']);
    assert.deepEqual([r.code, r.out, r.err], [0, 'started\n', 'oops\n']);
    const t1 = await lxrctl(['logs', '--tail', '1', 'ws1']);
    assert.deepEqual([t1.out, t1.err], ['', 'oops\n'], 'the last line only (it went to stderr)');
    const t2 = await lxrctl(['logs', '-n', '2', 'ws1']);
    assert.deepEqual([t2.out, t2.err], ['started\n', 'oops\n']);
    const t0 = await lxrctl(['logs', '--tail', '0', 'ws1']);
    assert.deepEqual([t0.code, t0.out, t0.err], [0, '', ''], 'docker\'s --tail 0: no old lines');
    assert.match(await ok(['logs', '-t', 'ws1']), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z started\n$/);
    assert.equal((await lxrctl(['logs', '--since', '1h', 'ws1'])).out, 'started\n');
    assert.equal((await lxrctl(['logs', '--since', '2999-01-01T00:00:00Z', 'ws1'])).out, '');
    await fails(['logs', '--since', 'whenever', 'ws1'], 2, /--since: "whenever" is neither a duration/);
    await fails(['logs', 'nope'], 4, /not found/);
    // -f keeps printing what comes: a workspace that prints every 0.2 s.
    await ok(['create', 'ticker', '--image', 'busybox', '--', 'sh', '-c', 'i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done']);
    const p = spawn(LXRCTL, ['logs', '-f', 'ticker'], { env });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    try {
      for (let t = 0; t < 100 && !/tick [5-9]/.test(out); t++) await sleep(100);
      assert.match(out, /tick 1\n(.|\n)*tick 5\n/);
    } finally {
      p.kill('SIGTERM');
    }
    await ok(['rm', '-f', 'ticker']);
  });

  test('stop, start, rm (-f), several names at once', async () => {
    await fails(['rm', 'ws2'], 1, /workspace ws2 is Running \(LXR_ILLEGAL_STATE\); stop it first \(lxrctl stop ws2\) or remove it anyway \(lxrctl rm -f ws2\)/);
    await ok(['exec', 'ws2', '--', 'sh', '-c', 'echo kept > /root/file']);
    const address = JSON.parse(await ok(['inspect', 'ws2'])).address;
    assert.equal(await ok(['stop', '-t', '1', 'ws2']), 'ws2\n');
    assert.doesNotMatch(await ok(['ps']), /^ws2/m, 'ps hides stopped workspaces');
    assert.match(await ok(['ps', '-a']), /^ws2\s+n\d\s+.*Stopped/m);
    await fails(['exec', 'ws2', '--', 'true'], 1, /Stopped/);
    assert.equal(await ok(['start', 'ws2']), 'ws2\n');
    assert.match(await ok(['ps']), /^ws2\s+n\d\s+198\.19\.\d+\.\d+\s+Running/m);
    assert.equal(await ok(['exec', 'ws2', '--', 'cat', '/root/file']), 'kept\n', 'a started workspace has its files');
    assert.equal(JSON.parse(await ok(['inspect', 'ws2'])).address, address, 'and its address');
    const both = await lxrctl(['stop', 'ws2', 'nope']);
    assert.equal(both.code, 4, 'the failure decides the exit code');
    assert.equal(both.out, 'ws2\n', 'the other name was still done');
    assert.match(both.err, /workspace "nope" not found/);
    await fails(['start', 'nope'], 4, /not found/);
    assert.equal(await ok(['rm', 'ws2']), 'ws2\n', 'a stopped workspace goes without -f');
    assert.equal(await ok(['rm', '-f', 'ws1']), 'ws1\n');
    assert.equal((await ok(['ps', '-a', '-q'])).trim(), '');
    await fails(['rm', 'ws1'], 4, /not found/);
  });

  test('an image that does not exist: create fails with not found and what to do', async () => {
    const r = await fails(['create', 'ghost', '--image', '198.18.0.254:5000/lxr/nope:v1'], 4, /workspace ghost failed on host n\d: .*not found.*\(LXR_NOT_FOUND\); lxrctl images ls lists the images/);
    assert.match(r.err, /lxrctl rm ghost/);
    assert.match(await ok(['ps', '-a']), /^ghost\s+n\d\s+Failed/m);
    await ok(['rm', 'ghost']);
    // A registry that does not answer (a lab address, nothing listening): the controller keeps
    // trying, and create gives up waiting after --timeout, saying why and what to do.
    const slow = await fails(['create', 'slow', '--image', '198.18.0.254:5999/lxr/x:v1', '--timeout', '4'], 3, /workspace slow is still Creating on host n\d after 4 s: retrying: .*\(LXR_UNAVAILABLE\); the controller keeps trying; lxrctl ps -a shows it, lxrctl rm -f slow gives up/);
    assert.equal(slow.err.trimEnd().split('\n').length, 1, 'not a terminal: no progress lines');
    assert.match(await ok(['ps']), /^slow\s+n\d\s+Creating/m);
    await ok(['rm', '-f', 'slow']);
    await fails(['create', 'x1', '--image', 'busybox', '--timeout', '0'], 2, /--timeout 0: must be at least 1 second/);
  });

  test('the server down, a missing context, and where lxrctl looks', async () => {
    await fails(['ps'], 3, /cannot reach the controller at unix:\/\/\/nonexistent\/c\.sock \(connect ENOENT\) \(LXR_UNAVAILABLE\); is lxr-controller running/, { env: { LXR_SERVER: '/nonexistent/c.sock' } });
    // A TCP address of the lab's with nothing listening, tried from inside the lab's namespace
    // (with the cluster's CA: without one lxrctl refuses before connecting).
    const closed = path.join(work, 'closed-config.json');
    writeFileSync(closed, JSON.stringify({ currentContext: 'closed', contexts: { closed: { server: '198.18.0.254:7999', ca: path.join(dir, 'controller', 'state', 'pki', 'ca.crt') } } }));
    const tcp = await run('nsenter', ['-t', String(lab.switch.pid), '-n', LXRCTL, 'hosts'], { env: { ...env, LXR_CONFIG: closed } }).then(
      () => assert.fail('lxrctl hosts against a closed port succeeded'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(tcp.code, 3, tcp.stderr);
    assert.match(tcp.stderr, /^lxrctl: cannot reach the controller at 198\.18\.0\.254:7999 \(connect ECONNREFUSED.*\(LXR_UNAVAILABLE\)/);
    await fails(['ps', '--context', 'nope'], 4, /no context "nope" in .*config\.json \(LXR_NOT_FOUND\); lxrctl config get-contexts lists them/);
    await fails(['ps'], 3, /cannot reach the controller at unix:\/\/\/run\/lxr\/controller\.sock/, { env: { LXR_CONFIG: path.join(work, 'empty-config.json'), LXR_SERVER: '' } });
    // The lab's controller reached through --server: the same answer as through the context.
    assert.equal(await ok(['--server', `unix://${dir}/controller/controller.sock`, 'ps', '-a', '-q'], { env: { LXR_CONFIG: path.join(work, 'empty-config.json') } }), '');
    mkdirSync(path.join(work, 'broken'), { recursive: true });
    writeFileSync(path.join(work, 'broken', 'config.json'), '{ nope');
    await fails(['ps'], 2, /the config .*broken\/config\.json is not valid JSON/, { env: { LXR_CONFIG: path.join(work, 'broken', 'config.json') } });
  });

  test('bash completion completes workspace and host names from the controller', async () => {
    await ok(['create', 'alpha', '--image', 'busybox']);
    try {
      const script = await ok(['completion', 'bash']);
      const complete = async (words: string[]): Promise<string[]> => {
        const { stdout } = await run('bash', ['-c', `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _lxrctl; printf '%s\\n' "\${COMPREPLY[@]}"`], { env });
        return stdout.split('\n').filter(Boolean).sort();
      };
      assert.deepEqual(await complete(['lxrctl', 'exec', 'al']), ['alpha']);
      assert.deepEqual(await complete(['lxrctl', 'hosts', 'cordon', 'n']), ['n1', 'n2']);
      assert.deepEqual(await complete(['lxrctl', 'exec', 'alpha', '']), [], 'one workspace per exec');
      assert.deepEqual(await complete(['lxrctl', 'rm', 'alpha', 'al']), ['alpha'], 'rm takes several');
      const zsh = await lxrctl(['completion', 'zsh']);
      assert.match(zsh.out, /^#compdef lxrctl/);
      if (existsSync('/usr/bin/zsh')) {
        const z = await run('zsh', ['-c', `autoload -U compinit && compinit -u; source <(${LXRCTL} completion zsh) && echo loaded`], { env });
        assert.equal(z.stdout.trim(), 'loaded');
      }
    } finally {
      await ok(['rm', '-f', 'alpha']);
    }
  });

  test('lab down removes the lab and its context', async () => {
    const down = await ok(['lab', 'down', '--name', name, '--dir', dir], { timeoutMs: 180_000 });
    assert.match(down, /is down/);
    assert.equal(existsSync(dir), false);
    const cfg = JSON.parse(readFileSync(env['LXR_CONFIG']!, 'utf8'));
    assert.equal(cfg.contexts[`lab-${name}`], undefined);
    assert.equal(cfg.currentContext, '');
  });
});
