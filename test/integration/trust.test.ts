// Trust as issue 8 asks to show it, in a lab of two hosts and a controller
// whose certificates live 24 s (so they are renewed during the test):
// clients without a certificate, with one of another CA, with an expired or
// a revoked one (and tokens likewise) are refused by the controller; agents
// answer the controller alone; a host cannot speak for another; joins with
// a bad, expired or foreign token, or to a controller impostor, fail with a
// clear message and leave no credentials behind; and an exec session
// attached through the controller survives the renewal of every certificate
// on its path. (Containers reaching no LXR port: controller-lab.test.ts.)
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { AGENT_PORT, CONTROLLER_PORT, labDown, labJoinToken, labUp, SWITCH_ADDRESS, type LabState } from '../../cli/lab/lab.js';
import { ClusterExecClient, ClusterHostsClient, TrustClient, unary, WorkspacesClient } from '../../proto/shared/api.js';
import { CertAuthority, certInfo, makeCsr, newKeyPem } from '../../proto/shared/pki.js';
import { agentTestSkip, importBusyboxOn } from '../helpers/agent.js';
import { ExecStream } from '../helpers/exec-stream.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';
import type { Probe, ProbeResult } from '../helpers/trust-probe.js';

const run = promisify(execFile);
const image = 'lab.example/lxr/busybox:v1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONTROLLER = `${SWITCH_ADDRESS}:${CONTROLLER_PORT}`;
const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;

describe('trust in the lab', { skip: agentTestSkip, timeout: 600_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let trust: TrustClient;
  let caPem: string;

  /** One call from inside the lab's network, with these credentials. */
  const probe = async (p: Probe): Promise<ProbeResult> => {
    const { stdout } = await run('nsenter', ['-t', String(lab.switch.pid), '-n', process.execPath, path.join(dist, 'test', 'helpers', 'trust-probe.js'), JSON.stringify(p)], { timeout: 30_000 });
    return JSON.parse(stdout) as ProbeResult;
  };
  const listWorkspaces = (creds: Partial<Probe>): Promise<ProbeResult> => probe({ target: CONTROLLER, client: 'workspaces', method: 'List', ca: caPem, ...creds });
  const refused = (r: ProbeResult, code: number, words: RegExp): void => {
    assert.equal(r.ok, false, `expected a refusal, got ${JSON.stringify(r)}`);
    assert.equal(r.code, code, JSON.stringify(r));
    assert.match(r.message ?? '', words);
  };
  /** A person's certificate from the cluster (over the root-only unix socket). */
  const operatorCert = async (name: string, ttlSeconds = 0): Promise<{ cert: string; key: string }> => {
    const key = newKeyPem();
    const res = await unary(trust, trust.CreateCredential, { name, ttlSeconds, csr: await makeCsr(key, { role: 'operator', name }) });
    return { cert: res.certificate, key };
  };
  const hostStates = async (): Promise<Map<string, string>> => {
    const c = new ClusterHostsClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    try {
      return new Map((await unary(c, c.List, {})).hosts.map((h) => [h.name, h.state]));
    } finally {
      c.close();
    }
  };
  const hostPki = (host: string) => {
    const d = path.join(dir, host, 'state', 'pki');
    const pem = readFileSync(path.join(d, 'host.pem'), 'utf8');
    return { cert: /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(pem)![0], key: /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/.exec(pem)![0] };
  };

  /** lxr-agent joining from inside the lab's network; resolves with its exit code and stderr once it exits. */
  const joinAttempt = async (name: string, controller: string, token: string): Promise<{ code: number | null; stderr: string; root: string }> => {
    const root = path.join(work, `join-${name}`);
    const p = spawn('nsenter', ['-t', String(lab.switch.pid), '-n', process.execPath, path.join(dist, 'agent', 'main.js'), '--root', root, '--socket', path.join(root, 'agent.sock'), '--run-root', path.join(root, 'run'), '--join', controller, '--token', token, '--name', name, '--listen', `${SWITCH_ADDRESS}:0`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => (p.kill('SIGKILL'), resolve(null)), 30_000);
      p.on('exit', (c) => (clearTimeout(t), resolve(c)));
    });
    return { code, stderr, root };
  };

  before(async () => {
    work = await ownedTempDir('trust');
    dir = path.join(work, 'lab');
    lab = await labUp({ name: uniqueId('t').toLowerCase().slice(0, 20), dir, hosts: 2, controller: true, controllerArgs: ['--cert-ttl', '24'] });
    trust = new TrustClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    caPem = readFileSync(path.join(dir, 'controller', 'state', 'pki', 'ca.crt'), 'utf8');
    await importBusyboxOn(work, lab.hosts.map((h) => h.socket), image);
  });

  after(async () => {
    trust?.close();
    if (dir) assert.deepEqual(await labDown(dir), []);
    if (work) await run('rm', ['-rf', work]);
  });

  test('the controller refuses a client without a credential, with another CA\'s certificate, or with an expired or revoked one', async () => {
    refused(await listWorkspaces({}), UNAUTHENTICATED, /needs a credential/);
    // Not TLS at all: the port speaks nothing else.
    const plain = await probe({ target: CONTROLLER, client: 'workspaces', method: 'List' });
    assert.equal(plain.ok, false);
    assert.equal(plain.code, grpc.status.UNAVAILABLE);

    const other = (await CertAuthority.create('impostor-ca')).ca;
    const key = newKeyPem();
    const foreign = await other.issue({ publicKey: key, id: { role: 'operator', name: 'mallory' }, ttlSeconds: 3600 });
    refused(await listWorkspaces({ cert: foreign, key }), UNAUTHENTICATED, /not issued by this cluster's CA/);

    const alice = await operatorCert('alice');
    const ok = await listWorkspaces(alice);
    assert.equal(ok.ok, true, JSON.stringify(ok));

    const brief = await operatorCert('brief', 1);
    await sleep(2500);
    refused(await listWorkspaces(brief), UNAUTHENTICATED, /operator "brief" expired at/);

    const bob = await operatorCert('bob');
    assert.equal((await listWorkspaces(bob)).ok, true);
    const revoked = await unary(trust, trust.RevokeCredential, { name: 'bob' });
    assert.deepEqual(revoked.revoked.map((c) => [c.name, c.kind, c.revoked]), [['bob', 'certificate', true]]);
    refused(await listWorkspaces(bob), UNAUTHENTICATED, /operator "bob" .*is revoked/);
    // alice is untouched by bob's revocation
    assert.equal((await listWorkspaces(alice)).ok, true);
  });

  test('people\'s tokens: a good one works until it is revoked; malformed, unknown and expired ones are refused', async () => {
    const tok = (await unary(trust, trust.CreateCredential, { name: 'carol' })).token;
    assert.match(tok, /^lxrop\.[0-9a-f]{8}\.[0-9a-f]{32}$/);
    assert.equal((await listWorkspaces({ token: tok })).ok, true);
    refused(await listWorkspaces({ token: 'not-a-token' }), UNAUTHENTICATED, /malformed/);
    refused(await listWorkspaces({ token: tok.replace(/.$/, (c) => (c === '0' ? '1' : '0')) }), UNAUTHENTICATED, /not valid here/);
    const short = (await unary(trust, trust.CreateCredential, { name: 'dave', ttlSeconds: 1 })).token;
    await sleep(2500);
    refused(await listWorkspaces({ token: short }), UNAUTHENTICATED, /expired at/);
    await unary(trust, trust.RevokeCredential, { name: 'carol' });
    refused(await listWorkspaces({ token: tok }), UNAUTHENTICATED, /revoked/);
    const listed = (await unary(trust, trust.ListCredentials, {})).credentials;
    assert.ok(listed.some((c) => c.name === 'carol' && c.kind === 'token' && c.revoked));
    // Managing credentials is for root on the controller's machine only, not over TCP.
    refused(await probe({ target: CONTROLLER, client: 'trust', method: 'CreateCredential', request: { name: 'eve' }, ca: caPem, ...(await operatorCert('frank')) }), PERMISSION_DENIED, /unix socket/);
    refused(await probe({ target: CONTROLLER, client: 'trust', method: 'CreateJoinToken', request: {}, ca: caPem }), PERMISSION_DENIED, /unix socket/);
  });

  test('a host speaks only for itself: another host\'s name is refused, and so is the people\'s API', async () => {
    const n1 = hostPki('n1');
    const asN1 = { ca: caPem, ...n1 };
    refused(await probe({ target: CONTROLLER, client: 'hosts', method: 'Register', request: { name: 'n2', address: '198.18.0.1:7070' }, ...asN1 }), PERMISSION_DENIED, /host "n1" cannot speak for host "n2"/);
    refused(await probe({ target: CONTROLLER, client: 'hosts', method: 'Heartbeat', request: { name: 'n2' }, ...asN1 }), PERMISSION_DENIED, /host "n1" cannot speak for host "n2"/);
    const own = await probe({ target: CONTROLLER, client: 'hosts', method: 'Heartbeat', request: { name: 'n1' }, ...asN1 });
    assert.equal(own.ok, true, JSON.stringify(own));
    refused(await listWorkspaces(n1), PERMISSION_DENIED, /host "n1" may not call this/);
    // A join token does not let a new machine take a member's name.
    const token = await labJoinToken(lab.controller!.socket);
    const key = newKeyPem();
    const taken = await probe({ target: CONTROLLER, client: 'trust', method: 'Join', request: { token, name: 'n2', csr: await makeCsr(key, { role: 'host', name: 'n2' }) }, ca: caPem });
    assert.equal(taken.code, grpc.status.ALREADY_EXISTS, JSON.stringify(taken));
    assert.match(taken.message ?? '', /host n2 is already a member/);
    // n2 is still the n2 that joined: its agent keeps its certificate and stays Ready.
    assert.deepEqual((await hostStates()).get('n2'), 'Ready');
  });

  test('agents answer the controller alone: no certificate, another CA, a person or another host are refused', async () => {
    const agent = `${lab.hosts[1]!.address}:${AGENT_PORT}`;
    const call = (creds: Partial<Probe>) => probe({ target: agent, client: 'containers', method: 'List', ...creds });
    // TLS itself refuses a client without a certificate of the cluster's CA.
    const none = await call({ ca: caPem });
    assert.equal(none.ok, false);
    assert.equal(none.code, grpc.status.UNAVAILABLE, JSON.stringify(none));
    const other = (await CertAuthority.create('other-ca')).ca;
    const key = newKeyPem();
    const foreign = await call({ ca: caPem, key, cert: await other.issue({ publicKey: key, id: { role: 'controller', name: 'lxr-controller' }, ttlSeconds: 3600 }) });
    assert.equal(foreign.ok, false);
    assert.equal(foreign.code, grpc.status.UNAVAILABLE, JSON.stringify(foreign));
    refused(await call({ ca: caPem, ...(await operatorCert('gina')) }), PERMISSION_DENIED, /operator "gina" may not call this: it is for the controller/);
    refused(await call({ ca: caPem, ...hostPki('n1') }), PERMISSION_DENIED, /host "n1" may not call this/);
  });

  test('joins with a malformed, wrong, expired or foreign token, or to an impostor, fail clearly and leave no credentials', async () => {
    const good = await labJoinToken(lab.controller!.socket);
    const [, id, secret, hash] = good.split('.');
    const cases: Array<[string, string, string, RegExp]> = [
      ['j1', CONTROLLER, 'lxr1.nope', /join token is malformed/],
      ['j2', CONTROLLER, `lxr1.${id}.${'0'.repeat(32)}.${hash}`, /join token [0-9a-f]{8} is not valid here/],
      ['j3', CONTROLLER, `lxr1.${id}.${secret}.${'ab'.repeat(32)}`, /not the controller this token is for/],
    ];
    const expired = await labJoinToken(lab.controller!.socket, 1);
    await sleep(2500);
    cases.push(['j4', CONTROLLER, expired, /join token [0-9a-f]{8} expired at/]);
    // An impostor: a controller of its own CA on another port of the lab.
    const idir = path.join(work, 'impostor');
    const impostor = spawn('nsenter', ['-t', String(lab.switch.pid), '-n', process.execPath, path.join(dist, 'controller', 'main.js'), '--root', path.join(idir, 'state'), '--socket', path.join(idir, 'c.sock'), '--listen', `${SWITCH_ADDRESS}:7300`], { stdio: 'ignore' });
    try {
      for (let t = 0; t < 20_000 && !existsSync(path.join(idir, 'c.sock')); t += 100) await sleep(100);
      cases.push(['j5', `${SWITCH_ADDRESS}:7300`, good, /server at 198\.18\.0\.254:7300 is not the controller this token is for/]);
      for (const [name, controller, token, words] of cases) {
        const r = await joinAttempt(name, controller, token);
        assert.equal(r.code, 1, `${name}: ${r.stderr}`);
        assert.match(r.stderr, words, name);
        assert.equal(existsSync(path.join(r.root, 'pki', 'host.pem')), false, `${name} left a certificate`);
      }
    } finally {
      impostor.kill('SIGTERM');
      await new Promise((r) => impostor.once('exit', r));
    }
    // None of them became a host.
    assert.deepEqual([...(await hostStates()).keys()].sort(), ['n1', 'n2']);
  });

  test('certificates are renewed before they expire, and an attached exec session survives it', async () => {
    const ws = new WorkspacesClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    const exec = new ClusterExecClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    try {
      await unary(ws, ws.Create, { spec: { name: 'rot', image, command: ['sleep', '3600'], host: 'n2' }, wait: true }, { deadline: Date.now() + 120_000 });
      const before = certInfo(hostPki('n2').cert)!;
      const s = ExecStream.start(exec, { container: 'rot', args: ['cat'] });
      s.input('before\n');
      await s.waitStdout((o) => o.includes('before')).catch(async (e: unknown) => {
        throw new Error(`${(e as Error).message}; the stream: ${await Promise.race([s.done.then((r) => JSON.stringify(r), (x: unknown) => String(x)), sleep(1000).then(() => 'still open')])}; controller log: ${readFileSync(lab.controller!.log, 'utf8').slice(-1500)}`);
      });
      // The agent's certificate (24 s) is renewed at two thirds of its life; the controller's too.
      let now = before;
      for (let t = 0; t < 60_000 && now.serial === before.serial; t += 500) {
        await sleep(500);
        now = certInfo(hostPki('n2').cert)!;
      }
      assert.notEqual(now.serial, before.serial, 'the agent renewed its certificate');
      assert.ok(now.notAfter > before.notAfter);
      assert.match(readFileSync(lab.controller!.log, 'utf8'), /"role":"controller".*"certificate renewed"|"certificate renewed".*"role":"controller"/);
      // Wait past the old certificate's end: the session still runs over the connection made with it.
      await sleep(Math.max(0, before.notAfter.getTime() - Date.now() + 1000));
      s.input('after\n');
      await s.waitStdout((o) => o.includes('after'));
      // New connections use the new certificates.
      const fresh = await ExecStream.start(exec, { container: 'rot', args: ['echo', 'fresh'] }).done;
      assert.equal(fresh.stdout.toString(), 'fresh\n');
      s.send({ closeStdin: true });
      const end = await s.done;
      assert.equal(end.exit?.code, 0);
      assert.equal(end.stdout.toString(), 'before\nafter\n');
    } finally {
      await unary(ws, ws.Delete, { name: 'rot' }).catch(() => {});
      ws.close();
      exec.close();
    }
  });

  test('removing a host revokes its certificates: the machine cannot register again with them', async () => {
    const n1 = hostPki('n1');
    const asN1 = { ca: caPem, ...n1 };
    assert.equal((await probe({ target: CONTROLLER, client: 'hosts', method: 'Heartbeat', request: { name: 'n1' }, ...asN1 })).ok, true);
    const hosts = new ClusterHostsClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    try {
      await unary(hosts, hosts.Remove, { name: 'n1', force: true });
    } finally {
      hosts.close();
    }
    let r: ProbeResult = { ok: true };
    for (let t = 0; t < 10_000 && r.ok !== false; t += 200) {
      r = await probe({ target: CONTROLLER, client: 'hosts', method: 'Register', request: { name: 'n1', address: '198.18.0.1:7070' }, ...asN1 });
      if (r.ok) await sleep(200);
    }
    refused(r, UNAUTHENTICATED, /host "n1" .*is revoked/);
    assert.equal((await hostStates()).has('n1'), false);
  });

  test('lxrctl: credentials made on the controller\'s machine work from another over TCP, and stop working when revoked', async () => {
    const lxrctl = path.join(dist, '..', 'bin', 'lxrctl');
    const local = ['--server', `unix://${lab.controller!.socket}`];
    const env = { ...process.env, LXR_CONFIG: path.join(work, 'cli', 'config.json') };
    const cli = (args: string[], inLab = false) =>
      run(inLab ? 'nsenter' : lxrctl, inLab ? ['-t', String(lab.switch.pid), '-n', lxrctl, ...args] : args, { env, timeout: 60_000 }).then(
        (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
      );
    await run('mkdir', ['-p', path.join(work, 'cli')]);
    const made = await cli([...local, 'credentials', 'create', 'hana', '--ttl', '1h', '--out', path.join(work, 'cli')]);
    assert.equal(made.code, 0, made.err);
    const token = made.out.trim();
    assert.match(token, /^lxrop\./);
    assert.match(made.err, /valid until .*lxrctl config set-context/s);
    assert.equal(readFileSync(path.join(work, 'cli', 'ca.crt'), 'utf8'), caPem);
    assert.equal((await cli(['config', 'set-context', 'prod', '--server', CONTROLLER, '--ca', 'ca.crt', '--token', token])).code, 0);
    assert.equal((await cli(['config', 'use-context', 'prod'])).code, 0);
    const ps = await cli(['ps', '-a'], true);
    assert.equal(ps.code, 0, ps.err);
    assert.match(ps.out, /^NAME\s+HOST/);
    const ls = await cli([...local, 'credentials', 'ls']);
    assert.match(ls.out, /hana\s+token\s+.*valid/);
    assert.doesNotMatch(ls.out, new RegExp(token.split('.')[2]!));
    // Over TCP, even a good credential cannot make more.
    const more = await cli(['credentials', 'create', 'ivan'], true);
    assert.equal(more.code, 1);
    assert.match(more.err, /managed only on the controller's unix socket \(as root on its machine\) \(LXR_PERMISSION_DENIED\)/);
    assert.match((await cli([...local, 'credentials', 'revoke', 'hana'])).out, /revoked token [0-9a-f]{8} of hana/);
    const after = await cli(['ps'], true);
    assert.equal(after.code, 1);
    assert.match(after.err, /the token [0-9a-f]{8} of "hana" is revoked \(LXR_UNAUTHENTICATED\); .*lxrctl credentials create/);
    // A context without the cluster's CA is refused before its token goes anywhere.
    assert.equal((await cli(['config', 'set-context', 'noca', '--server', CONTROLLER, '--token', token])).code, 0);
    const noca = await cli(['--context', 'noca', 'ps'], true);
    assert.equal(noca.code, 2);
    assert.match(noca.err, /context noca: a controller over TCP is checked against the cluster's CA, and none is set/);
  });
});
