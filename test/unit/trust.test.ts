// The cluster's trust: the CA and the identities its certificates name
// (pki), TLS identities handed to grpc-js and their renewal, the controller's
// join tokens, people's credentials, revocation and per-call policy, a host's
// saved credentials, and one mutual-TLS round trip on 127.0.0.1.
import assert from 'node:assert/strict';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import tls from 'node:tls';
import { hostCredentials, loadHostIdentity, pinControllerCa } from '../../agent/cluster/credentials.js';
import { formatJoinToken, parseJoinToken } from '../../proto/shared/join-token.js';

const tokenCaHash = (t: string): string => parseJoinToken(t).caHash;
import { MemoryStore, type Store } from '../../controller/store/index.js';
import { controllerPolicy } from '../../controller/trust/controller-policy.js';
import { TrustService } from '../../controller/trust/trust-service.js';
import { controllerServices, HealthClient, TrustClient, unary } from '../../proto/shared/api.js';
import { authInterceptor, callAuth, onlyFor } from '../../proto/shared/auth-interceptor.js';
import { LxrError } from '../../proto/shared/errors.js';
import { fromStatus } from '../../proto/shared/grpc-errors.js';
import { HealthService } from '../../proto/shared/health.js';
import { rootLogger } from '../../proto/shared/log.js';
import { CertAuthority, certInfo, csrPublicKey, describeIdentity, IssuedCertificates, makeCsr, newKeyPem, spkiHash, verifyIssued, type CertInfo, type Identity } from '../../proto/shared/pki.js';
import { Renewal, renewAt } from '../../proto/shared/renewal.js';
import { expectIdentity, identityCheck, TlsIdentity } from '../../proto/shared/tls.js';
import { rejectsWith, throwsWith } from '../helpers/lxr-errors.js';
import { tempDir } from '../helpers/tmp.js';

const log = rootLogger('lxr-trust-test', process.env.LXR_LOG_LEVEL ?? 'silent');
const HOUR = 3600_000;
const der = (pem: string): Buffer => Buffer.from(new X509Certificate(pem).raw);
const spkiOf = (keyPem: string): Buffer => createPublicKey(keyPem).export({ type: 'spki', format: 'der' });


async function request(id: Identity): Promise<{ keyPem: string; csr: string }> {
  const keyPem = newKeyPem();
  return { keyPem, csr: await makeCsr(keyPem, id) };
}

async function leaf(ca: CertAuthority, id: Identity, o: { ttlSeconds?: number; notBefore?: Date } = {}): Promise<{ certPem: string; keyPem: string }> {
  const keyPem = newKeyPem();
  return { keyPem, certPem: await ca.issue({ publicKey: keyPem, id, ttlSeconds: o.ttlSeconds ?? 3600, ...(o.notBefore ? { notBefore: o.notBefore } : {}) }) };
}

/** A controller's trust over a MemoryStore, with a clock the test moves. */
async function trustWorld(o: { store?: Store; dir?: string } = {}) {
  const clock = { t: Date.now() };
  const store = o.store ?? new MemoryStore();
  const dir = o.dir ?? path.join(await tempDir('trust'), 'pki');
  const trust = await TrustService.open({ store, dir, log, now: () => new Date(clock.t) });
  return { trust, store, dir, clock };
}

async function until(cond: () => boolean, what: string, limitMs = 20_000): Promise<void> {
  for (const end = Date.now() + limitMs; !cond(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('pki', () => {
  it('a leaf names its role, holder and addresses; the CA that issued it verifies it', async () => {
    const { ca } = await CertAuthority.create();
    assert.match(ca.hash, /^sha256:[0-9a-f]{64}$/);
    assert.equal(ca.hash, spkiHash(ca.certPem));
    const keyPem = newKeyPem();
    const pem = await ca.issue({ publicKey: keyPem, id: { role: 'host', name: 'n1' }, ttlSeconds: 600, ips: ['198.18.0.5'], dns: ['n1'] });
    const info = certInfo(pem);
    assert.ok(info);
    assert.deepEqual([info.role, info.name], ['host', 'n1']);
    assert.match(info.serial, /^[1-9a-f][0-9a-f]*$/);
    assert.ok(info.notAfter.getTime() - info.notBefore.getTime() >= 600_000);
    assert.deepEqual(ca.verify(pem), info);
    assert.deepEqual(spkiOf(keyPem), new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }));
    assert.match(new X509Certificate(pem).subjectAltName ?? '', /DNS:n1.*IP Address:198\.18\.0\.5/);
    assert.equal(describeIdentity({ role: 'controller', name: 'x' }), 'the controller');
    assert.equal(describeIdentity({ role: 'operator', name: 'ann' }), 'operator "ann"');
  });

  it('a request proves its key: the CA issues for that key; a non-PEM or tampered request is refused by field', async () => {
    const { ca } = await CertAuthority.create();
    const { keyPem, csr } = await request({ role: 'host', name: 'tamperme' });
    const pem = await ca.issue({ publicKey: await csrPublicKey(csr), id: { role: 'host', name: 'n1' }, ttlSeconds: 60 });
    assert.deepEqual(Buffer.from(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })), spkiOf(keyPem));
    await rejectsWith(csrPublicKey('not a request', 'req.csr'), 'LXR_INVALID_ARGUMENT', /req\.csr is not a PEM certificate signing request/, 'req.csr');
    const body = Buffer.from(csr.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    const at = body.indexOf('tamperme');
    assert.ok(at > 0);
    body.write('tamperm3', at);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${body.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await rejectsWith(csrPublicKey(tampered), 'LXR_INVALID_ARGUMENT', /csr: the request's signature does not match its key/, 'csr');
  });

  it('verifyIssued refuses, saying why: unreadable, another CA, no role, not yet valid, expired', async () => {
    const { ca } = await CertAuthority.create();
    const other = (await CertAuthority.create()).ca;
    const mine = await leaf(ca, { role: 'host', name: 'n1' });
    throwsWith(() => verifyIssued('garbage', ca.certificate), 'LXR_UNAUTHENTICATED', /cannot be read/);
    throwsWith(() => verifyIssued(other.certPem, ca.certificate), 'LXR_UNAUTHENTICATED', /is not issued by this cluster's CA/);
    throwsWith(() => ca.verify(ca.certPem), 'LXR_UNAUTHENTICATED', /names no LXR role/);
    const later = await leaf(ca, { role: 'host', name: 'n2' }, { notBefore: new Date(Date.now() + HOUR) });
    throwsWith(() => ca.verify(later.certPem), 'LXR_UNAUTHENTICATED', /host "n2" is not valid before/);
    const old = await leaf(ca, { role: 'operator', name: 'ann' }, { notBefore: new Date(Date.now() - 2 * HOUR), ttlSeconds: 60 });
    throwsWith(() => ca.verify(old.certPem), 'LXR_UNAUTHENTICATED', /operator "ann" expired at/);
    throwsWith(() => ca.verify(mine.certPem, new Date(Date.now() + 2 * HOUR)), 'LXR_UNAUTHENTICATED', /host "n1" expired at/);
    assert.equal(ca.verify(mine.certPem).name, 'n1');
    const foreign = await leaf(other, { role: 'host', name: 'n1' });
    throwsWith(() => ca.verify(foreign.certPem), 'LXR_UNAUTHENTICATED', /"CN=n1, O=lxr:host" is not issued by this cluster's CA/);
  });

  it('a CA loaded from its PEM files is the same CA', async () => {
    const made = await CertAuthority.create();
    const loaded = await CertAuthority.load(made.ca.certPem, made.keyPem);
    assert.equal(loaded.hash, made.ca.hash);
    const { certPem } = await leaf(loaded, { role: 'host', name: 'n1' });
    assert.equal(made.ca.verify(certPem).name, 'n1');
  });

  it('certInfo reads back the name issue() wrote, even one with RFC 4514 special characters', async () => {
    const { ca } = await CertAuthority.create();
    const { certPem } = await leaf(ca, { role: 'operator', name: 'a,b' });
    assert.equal(certInfo(certPem)?.name, 'a,b');
  });
});

describe('TLS identity', () => {
  it('listeners get the identity a moment later, not from inside add; update() pushes the new one at once', async () => {
    const { ca } = await CertAuthority.create();
    const one = await leaf(ca, { role: 'host', name: 'n1' });
    const id = new TlsIdentity(ca.certPem, one.certPem, one.keyPem);
    const got: string[] = [];
    const cas: string[] = [];
    const gone: unknown[] = [];
    const l = (u: { certificate: Buffer; privateKey: Buffer } | null): void => void got.push(u ? `${u.certificate.toString()}|${u.privateKey.toString()}` : 'null');
    const removed = (u: unknown): void => void gone.push(u);
    id.addIdentityCertificateListener(l);
    id.addIdentityCertificateListener(removed);
    id.addCaCertificateListener((u) => void cas.push(u?.caCertificate.toString() ?? 'null'));
    id.removeIdentityCertificateListener(removed);
    assert.deepEqual([got.length, cas.length], [0, 0]);
    await Promise.resolve();
    assert.deepEqual(cas, [ca.certPem]);
    assert.equal(got.length, 1);
    // The chain carries the CA, so a joining agent can pin it by hash.
    assert.ok(got[0]!.startsWith(one.certPem.trimEnd() + '\n' + ca.certPem), got[0]);
    assert.ok(got[0]!.endsWith('|' + one.keyPem));
    const two = await leaf(ca, { role: 'host', name: 'n1' });
    id.update(two.certPem, two.keyPem);
    assert.equal(got.length, 2);
    assert.ok(got[1]!.startsWith(two.certPem.trimEnd()) && got[1]!.endsWith(two.keyPem));
    assert.equal(id.info.serial, certInfo(two.certPem)?.serial);
    assert.deepEqual(gone, []);
    assert.throws(() => id.update(ca.certPem, two.keyPem), /names no LXR role/);
    assert.equal(id.certPem, two.certPem);
  });

  it('identityCheck compares the server certificate\'s identity with the expected one', async () => {
    const { ca } = await CertAuthority.create();
    const ctl = await leaf(ca, { role: 'controller', name: 'lxr-controller' });
    const n2 = await leaf(ca, { role: 'host', name: 'n2' });
    const peer = (pem: string) => ({ raw: der(pem) }) as unknown as PeerCertificate;
    const wantCtl = identityCheck(expectIdentity({ role: 'controller', name: '' }));
    const wantN1 = identityCheck(expectIdentity({ role: 'host', name: 'n1' }));
    assert.equal(wantCtl('127.0.0.1', peer(ctl.certPem)), undefined);
    assert.match(wantCtl('127.0.0.1', peer(n2.certPem))?.message ?? '', /the server is host "n2", not the controller/);
    assert.match(wantN1('127.0.0.1', peer(n2.certPem))?.message ?? '', /the server is host "n2", not host "n1"/);
    assert.match(wantN1('127.0.0.1', peer(ctl.certPem))?.message ?? '', /the server is the controller, not host "n1"/);
    assert.match(wantCtl('127.0.0.1', peer(ca.certPem))?.message ?? '', /names no LXR role/);
    assert.match(wantCtl('127.0.0.1', {} as PeerCertificate)?.message ?? '', /names no LXR role/);
  });
});

describe('renewal', () => {
  it('renews at two thirds of what is left, and at once (a second) when little or nothing is', () => {
    const now = new Date(Date.UTC(2024, 0, 1));
    const at = (msLeft: number): number => renewAt(new Date(now.getTime() + msLeft), now).getTime() - now.getTime();
    assert.equal(at(30_000), 20_000);
    assert.equal(at(900), 1000);
    assert.equal(at(-HOUR), 1000);
  });

  it('a certificate that runs out before any renewal succeeds: the holder is told once, and the retries stop', async () => {
    const { ca } = await CertAuthority.create();
    const brief = await leaf(ca, { role: 'host', name: 'n1' }, { ttlSeconds: 2 });
    const id = new TlsIdentity(ca.certPem, brief.certPem, brief.keyPem);
    let calls = 0;
    let expired = 0;
    const r = new Renewal(id, async () => {
      calls++;
      throw new Error('injected: refused');
    }, log, () => {}, () => expired++);
    r.start();
    try {
      await until(() => expired === 1, 'the expiry to be reported');
      const after = calls;
      await new Promise((res) => setTimeout(res, 2500));
      assert.deepEqual([expired, calls], [1, after], 'no more attempts after the expiry');
      assert.ok(after >= 1);
    } finally {
      r.stop();
    }
  });

  it('renews a short-lived certificate, retries a failed fetch, and stop() drops a fetch in flight', async () => {
    const { ca } = await CertAuthority.create();
    const first = await leaf(ca, { role: 'host', name: 'n1' }, { ttlSeconds: 3 });
    const id = new TlsIdentity(ca.certPem, first.certPem, first.keyPem);
    const fresh = await leaf(ca, { role: 'host', name: 'n1' }, { ttlSeconds: 3 });
    const late = await leaf(ca, { role: 'host', name: 'n1' }, { ttlSeconds: 3 });
    let calls = 0;
    let release: () => void = () => {};
    const renewed: string[] = [];
    const r = new Renewal(
      id,
      async () => {
        calls++;
        if (calls === 1) throw new Error('injected: the controller is down');
        if (calls === 2) return fresh;
        await new Promise<void>((res) => (release = res));
        return late;
      },
      log,
      (certPem) => renewed.push(certPem),
    );
    r.start();
    try {
      await until(() => r.count === 1, 'a renewal after the failed fetch');
      assert.equal(calls, 2);
      assert.equal(id.certPem, fresh.certPem);
      assert.deepEqual(renewed, [fresh.certPem]);
      await until(() => calls === 3, 'the next renewal of the new certificate');
      r.stop();
      release();
      await new Promise((res) => setTimeout(res, 1500));
      assert.equal(id.certPem, fresh.certPem);
      assert.deepEqual([r.count, renewed.length, calls], [1, 1, 3]);
    } finally {
      r.stop();
      release();
    }
  });
});

describe('auth interceptor and controller policy', () => {
  it('callAuth takes the certificate and the authorization metadata, when there are any', () => {
    const md = new grpc.Metadata();
    md.set('authorization', 'Bearer lxrop.x');
    const raw = Buffer.from('cert');
    assert.deepEqual(callAuth(raw, md), { cert: raw, authorization: 'Bearer lxrop.x' });
    assert.deepEqual(callAuth(undefined, new grpc.Metadata()), {});
    assert.deepEqual(callAuth(undefined, md), { authorization: 'Bearer lxrop.x' });
    assert.equal(onlyFor('hosts', { role: 'operator', name: 'ann' } as CertInfo), 'operator "ann" may not call this: it is for hosts');
    assert.match(onlyFor('hosts', null), /needs a credential \(hosts\)/);
  });

  it('who may call what on the controller\'s TCP port', async () => {
    const { trust } = await trustWorld();
    const policy = controllerPolicy(trust);
    const host = { role: 'host', name: 'n1' } as CertInfo;
    const op = { role: 'operator', name: 'ann' } as CertInfo;
    const table: Array<[string, CertInfo | null, true | RegExp]> = [
      ['Trust/Join', null, true],
      ['Trust/CreateJoinToken', null, /only on the controller's unix socket/],
      // (refused as PERMISSION_DENIED even without a credential: see the instanceof check below)
      ['Trust/CreateJoinToken', host, /only on the controller's unix socket/],
      ['Trust/CreateJoinToken', op, /only on the controller's unix socket/],
      ['Trust/RevokeCredential', op, /only on the controller's unix socket/],
      ['Hosts/Register', host, true],
      ['Hosts/Heartbeat', host, true],
      ['Trust/Renew', host, true],
      ['Workspaces/List', host, /host "n1" may not call this: it is for people/],
      ['Workspaces/List', op, true],
      ['Hosts/Register', op, /operator "ann" may not call this: it is for hosts/],
      ['Trust/Renew', op, /operator "ann" may not call this: it is for hosts/],
      ['Workspaces/List', null, /needs a credential/],
      ['Hosts/Register', null, /needs a credential/],
      ['Trust/Renew', null, /needs a credential/],
    ];
    for (const [m, who, want] of table) {
      const got = policy.allowed(`/lxr.controller.v1.${m}`, who);
      if (want === true) assert.equal(got, true, `${m} by ${who?.name ?? 'nobody'}: ${String(got)}`);
      else assert.match(String(got), want, `${m} by ${who?.name ?? 'nobody'}`);
    }
    const local = policy.allowed('/lxr.controller.v1.Trust/CreateJoinToken', null);
    assert.ok(local instanceof LxrError && local.reason === 'LXR_PERMISSION_DENIED', String(local));
    assert.equal(policy.allowed('/grpc.health.v1.Health/Check', host), true);
    assert.match(String(policy.allowed('/grpc.health.v1.Health/Check', null)), /needs a credential/);
    assert.equal(policy.authenticate({}), null);
  });
});

describe('trust service', () => {
  it('a good join token trades a host\'s request for a certificate of its own key and IPv4 addresses', async () => {
    const { trust } = await trustWorld();
    const { token, expiresAt } = await trust.createJoinToken();
    assert.match(token, /^lxr1\.[0-9a-f]{8}\.[0-9a-f]{32}\.[0-9a-f]{64}$/);
    assert.equal(tokenCaHash(token), trust.ca.hash);
    assert.ok(Math.abs(new Date(expiresAt).getTime() - Date.now() - 24 * HOUR) < 60_000, expiresAt);
    const { keyPem, csr } = await request({ role: 'host', name: 'ignored' });
    const res = await trust.join({ token, name: 'n1', csr, addresses: ['198.18.0.5', 'fe80::1'] }, () => false);
    assert.equal(res.ca, trust.ca.certPem);
    const c = new X509Certificate(res.certificate);
    assert.deepEqual(Buffer.from(c.publicKey.export({ type: 'spki', format: 'der' })), spkiOf(keyPem));
    assert.match(c.subjectAltName ?? '', /IP Address:198\.18\.0\.5/);
    assert.doesNotMatch(c.subjectAltName ?? '', /fe80/i);
    const who = trust.authenticate(der(res.certificate), undefined);
    assert.deepEqual([who?.role, who?.name], ['host', 'n1']);
    // A token is good for more than one machine until it expires.
    const again = await trust.join({ token, name: 'n2', csr }, () => false);
    assert.equal(certInfo(again.certificate)?.name, 'n2');
  });

  it('join refuses bad tokens, names of members, bad names and bad requests, each by reason', async () => {
    const { trust, clock } = await trustWorld();
    const other = (await trustWorld()).trust;
    const { token } = await trust.createJoinToken(60);
    const [, id, secret, hash] = token.split('.') as [string, string, string, string];
    const { csr } = await request({ role: 'host', name: 'n1' });
    const join = (req: { token?: string; name?: string; csr?: string }, member = false, local = false) => trust.join({ name: 'n1', csr, ...req }, (n) => member && n === 'n1', local);
    await rejectsWith(join({ token: 'lxr1.nope' }), 'LXR_INVALID_ARGUMENT', /join token is malformed/, 'token');
    await rejectsWith(join({}), 'LXR_INVALID_ARGUMENT', /join token is malformed/, 'token');
    await rejectsWith(join({ token: `lxr1.${id}.${'0'.repeat(32)}.${hash}` }), 'LXR_UNAUTHENTICATED', new RegExp(`join token ${id} is not valid here`));
    await rejectsWith(join({ token: `lxr1.00000000.${secret}.${hash}` }), 'LXR_UNAUTHENTICATED', /join token 00000000 is not valid here/);
    await rejectsWith(join({ token: (await other.createJoinToken()).token }), 'LXR_UNAUTHENTICATED', /made for another cluster/);
    await rejectsWith(join({ token }, true), 'LXR_ALREADY_EXISTS', /host n1 is already a member/, 'name');
    await rejectsWith(join({ token, name: 'N_1' }), 'LXR_INVALID_ARGUMENT', /not a DNS label/, 'name');
    await rejectsWith(join({ token, csr: 'junk' }), 'LXR_INVALID_ARGUMENT', /csr is not a PEM/, 'csr');
    // On the unix socket (local) no token is needed, but a member's name is still refused.
    assert.equal(certInfo((await join({}, false, true)).certificate)?.name, 'n1');
    await rejectsWith(join({}, true, true), 'LXR_ALREADY_EXISTS', /already a member/, 'name');
    clock.t += 61_000;
    await rejectsWith(join({ token }), 'LXR_UNAUTHENTICATED', new RegExp(`join token ${id} expired at`));
    await rejectsWith(join({ token }, false, true), 'LXR_UNAUTHENTICATED', /expired at/);
    await rejectsWith(trust.createJoinToken(-5), 'LXR_INVALID_ARGUMENT', /ttl_seconds: must be 1 to/, 'ttl_seconds');
  });

  it('a member host renews its own identity for a new key, with its registered address; others are refused', async () => {
    const { trust } = await trustWorld();
    const { keyPem, csr } = await request({ role: 'host', name: 'whatever' });
    const member = (name: string) => (name === 'n1' ? { ips: ['198.18.0.1'] } : null);
    const res = await trust.renew({ role: 'host', name: 'n1' }, csr, member);
    assert.deepEqual([certInfo(res.certificate)?.role, certInfo(res.certificate)?.name], ['host', 'n1']);
    assert.match(new X509Certificate(res.certificate).subjectAltName ?? '', /IP Address:198\.18\.0\.1/);
    assert.equal(res.notAfter, certInfo(res.certificate)!.notAfter.toISOString());
    assert.deepEqual(Buffer.from(new X509Certificate(res.certificate).publicKey.export({ type: 'spki', format: 'der' })), spkiOf(keyPem));
    await rejectsWith(trust.renew({ role: 'operator', name: 'ann' }, csr, member), 'LXR_PERMISSION_DENIED', /operator "ann" cannot renew here/);
    await rejectsWith(trust.renew({ role: 'host', name: 'n1' }, 'junk', member), 'LXR_INVALID_ARGUMENT', /csr/, 'csr');
    await rejectsWith(trust.renew({ role: 'host', name: 'gone' }, csr, member), 'LXR_NOT_FOUND', /host gone is not a member/);
    // A renewal with a certificate revoked meanwhile (the host was removed) is refused.
    const serial = certInfo(res.certificate)!.serial;
    await trust.revokeHost('n1');
    await rejectsWith(trust.renew({ role: 'host', name: 'n1', serial }, csr, member), 'LXR_UNAUTHENTICATED', /is revoked/);
  });

  it('removal and renewal of one host never interleave: a renewal racing a removal is revoked with it or refused', async () => {
    const { trust } = await trustWorld();
    const { csr } = await request({ role: 'host', name: 'n1' });
    let member = true;
    const renewals = Array.from({ length: 6 }, () => trust.renew({ role: 'host', name: 'n1' }, csr, () => (member ? { ips: [] } : null)).catch((e: unknown) => e as Error));
    const removal = trust.revokeHost('n1').then((n) => ((member = false), n));
    const results = await Promise.all(renewals);
    await removal;
    for (const r of results) {
      if (r instanceof Error) {
        // Refused because the removal came first.
        assert.ok(r instanceof LxrError && ['LXR_NOT_FOUND', 'LXR_UNAUTHENTICATED'].includes(r.reason), String(r));
        continue;
      }
      throwsWith(() => trust.authenticate(der(r.certificate), undefined), 'LXR_UNAUTHENTICATED', /is revoked/);
    }
    assert.ok(results.some((r) => !(r instanceof Error)), 'some renewals came before the removal');
    assert.equal(await trust.revokeHost('not a label/..'), 0, 'a name that is no DNS label holds nothing');
  });

  it('a name with a live certificate from a join cannot be joined again until that join is revoked', async () => {
    const { trust } = await trustWorld();
    const token = (await trust.createJoinToken()).token;
    const join = async () => trust.join({ token, name: 'n7', csr: (await request({ role: 'host', name: 'n7' })).csr }, () => false);
    await join();
    await rejectsWith(join(), 'LXR_ALREADY_EXISTS', /a machine joined as host n7 .* has not registered yet/);
    assert.equal(await trust.revokeHost('n7'), 1);
    assert.equal(await trust.revokeHost('never-joined'), 0);
    await join();
  });

  it('people\'s credentials: tokens and certificates, checked arguments, listed without secrets', async () => {
    const { trust } = await trustWorld();
    const tok = await trust.createCredential({ name: 'bob', ttlSeconds: 600 });
    assert.match(tok.token, new RegExp(`^lxrop\\.${tok.id}\\.[0-9a-f]{32}$`));
    assert.equal(tok.certificate, '');
    const { csr } = await request({ role: 'operator', name: 'x' });
    const cert = await trust.createCredential({ name: 'ann', csr });
    assert.equal(cert.token, '');
    assert.deepEqual([certInfo(cert.certificate)?.role, certInfo(cert.certificate)?.name], ['operator', 'ann']);
    await rejectsWith(trust.createCredential({ name: 'ann', csr: 'junk' }), 'LXR_INVALID_ARGUMENT', /csr is not a PEM/, 'csr');
    await rejectsWith(trust.createCredential({ name: 'Ann!' }), 'LXR_INVALID_ARGUMENT', /not a DNS label/, 'name');
    await rejectsWith(trust.createCredential({}), 'LXR_INVALID_ARGUMENT', /name: required/, 'name');
    for (const ttlSeconds of [-1, 1.5, 10 * 365 * 86400 + 1]) {
      await rejectsWith(trust.createCredential({ name: 'bob', ttlSeconds }), 'LXR_INVALID_ARGUMENT', new RegExp(`ttl_seconds: must be 1 to .* got ${ttlSeconds}`), 'ttl_seconds');
    }
    const list = trust.listCredentials();
    assert.deepEqual(
      list.map((c) => [c.name, c.kind, c.id, c.revoked]),
      [
        ['ann', 'certificate', cert.id, false],
        ['bob', 'token', tok.id, false],
      ],
    );
    for (const c of list) assert.deepEqual(Object.keys(c).sort(), ['createdAt', 'expiresAt', 'id', 'kind', 'name', 'revoked']);
  });

  it('revoking a name refuses its token and its certificate from then on, and nobody else\'s', async () => {
    const { trust } = await trustWorld();
    const tok = await trust.createCredential({ name: 'ann' });
    const cert = await trust.createCredential({ name: 'ann', csr: (await request({ role: 'operator', name: 'ann' })).csr });
    const bob = await trust.createCredential({ name: 'bob' });
    assert.equal(trust.authenticate(undefined, `Bearer ${tok.token}`)?.name, 'ann');
    assert.equal(trust.authenticate(der(cert.certificate), undefined)?.name, 'ann');
    await rejectsWith(trust.revoke('carol'), 'LXR_NOT_FOUND', /no credential of "carol"/);
    const revoked = await trust.revoke('ann');
    assert.deepEqual(revoked.map((c) => [c.id, c.revoked]).sort(), [[tok.id, true], [cert.id, true]].sort());
    throwsWith(() => trust.authenticate(undefined, `Bearer ${tok.token}`), 'LXR_UNAUTHENTICATED', new RegExp(`token ${tok.id} of "ann" is revoked`));
    throwsWith(() => trust.authenticate(der(cert.certificate), undefined), 'LXR_UNAUTHENTICATED', /operator "ann" \(serial [0-9a-f]+\) is revoked/);
    assert.equal(trust.authenticate(undefined, `Bearer ${bob.token}`)?.name, 'bob');
    assert.deepEqual(await trust.revoke('ann'), []);
  });

  it('authenticate: nothing is null; another CA, an expired certificate, bad or expired bearers are refused', async () => {
    const { trust, clock } = await trustWorld();
    const other = (await trustWorld()).trust;
    assert.equal(trust.authenticate(undefined, undefined), null);
    assert.equal(trust.authenticate(undefined, ''), null);
    const foreign = await leaf(other.ca, { role: 'operator', name: 'ann' });
    throwsWith(() => trust.authenticate(der(foreign.certPem), undefined), 'LXR_UNAUTHENTICATED', /not issued by this cluster's CA/);
    const tok = await trust.createCredential({ name: 'ann', ttlSeconds: 60 });
    const cert = await trust.createCredential({ name: 'cat', csr: (await request({ role: 'operator', name: 'cat' })).csr, ttlSeconds: 60 });
    const [, id, secret] = tok.token.split('.') as [string, string, string];
    for (const bad of ['Basic abc', `Bearer lxr1.${id}.${secret}`, 'Bearer lxrop.zz.zz', `Bearer ${tok.token} extra`]) {
      throwsWith(() => trust.authenticate(undefined, bad), 'LXR_UNAUTHENTICATED', /bearer token is malformed/);
    }
    throwsWith(() => trust.authenticate(undefined, `Bearer lxrop.${id}.${'0'.repeat(32)}`), 'LXR_UNAUTHENTICATED', new RegExp(`token ${id} is not valid here`));
    throwsWith(() => trust.authenticate(undefined, `Bearer lxrop.${cert.id}.${secret}`), 'LXR_UNAUTHENTICATED', /is not valid here/);
    const who = trust.authenticate(undefined, `bearer  ${tok.token}`);
    assert.deepEqual([who?.role, who?.name, who?.notAfter.toISOString()], ['operator', 'ann', tok.expiresAt]);
    clock.t += 120_000;
    throwsWith(() => trust.authenticate(undefined, `Bearer ${tok.token}`), 'LXR_UNAUTHENTICATED', /of "ann" expired at/);
    throwsWith(() => trust.authenticate(der(cert.certificate), undefined), 'LXR_UNAUTHENTICATED', /operator "cat" expired at/);
  });

  it('the CA and revocations outlive a restart: same dir, same CA; same store, same revocations', async () => {
    const first = await trustWorld();
    assert.equal(statSync(path.join(first.dir, 'ca.key')).mode & 0o777, 0o600);
    const tok = await first.trust.createCredential({ name: 'ann' });
    const cert = await first.trust.createCredential({ name: 'ann', csr: (await request({ role: 'operator', name: 'ann' })).csr });
    const host = await leaf(first.trust.ca, { role: 'host', name: 'n1' });
    await first.trust.revoke('ann');
    await first.trust.revokeSerials([certInfo(host.certPem)!.serial]);
    const again = await trustWorld({ store: first.store, dir: first.dir });
    assert.equal(again.trust.ca.hash, first.trust.ca.hash);
    const byId = (t: TrustService) => t.listCredentials().sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(byId(again.trust), byId(first.trust));
    assert.equal(again.trust.listCredentials().length, 2);
    throwsWith(() => again.trust.authenticate(undefined, `Bearer ${tok.token}`), 'LXR_UNAUTHENTICATED', /is revoked/);
    throwsWith(() => again.trust.authenticate(der(cert.certificate), undefined), 'LXR_UNAUTHENTICATED', /operator "ann" .* is revoked/);
    throwsWith(() => again.trust.authenticate(der(host.certPem), undefined), 'LXR_UNAUTHENTICATED', /host "n1" .* is revoked/);
    const elsewhere = await trustWorld({ store: first.store });
    assert.notEqual(elsewhere.trust.ca.hash, first.trust.ca.hash);
  });
});

describe('host credentials', () => {
  async function root(ca: CertAuthority, name: string, o: { ttlSeconds?: number; notBefore?: Date } = {}) {
    const dir = await tempDir('host');
    const { certPem, keyPem } = await leaf(ca, { role: 'host', name }, o);
    mkdirSync(path.join(dir, 'pki'));
    writeFileSync(path.join(dir, 'pki', 'host.pem'), certPem + keyPem);
    writeFileSync(path.join(dir, 'pki', 'ca.crt'), ca.certPem);
    return { dir, certPem, keyPem };
  }
  const opts = (dir: string, o: { name?: string; token?: string } = {}) => ({ root: dir, controller: '127.0.0.1:1', name: 'n1', addresses: [], log, ...o });

  it('a join token carries the pin of the CA (and reads back as written); a malformed one is refused', async () => {
    assert.equal(formatJoinToken(parseJoinToken(`lxr1.0123abcd.${'1'.repeat(32)}.${'ab'.repeat(32)}`)), `lxr1.0123abcd.${'1'.repeat(32)}.${'ab'.repeat(32)}`);
    const h = 'ab'.repeat(32);
    assert.equal(tokenCaHash(` lxr1.0123abcd.${'0'.repeat(32)}.${h}\n`), `sha256:${h}`);
    throwsWith(() => tokenCaHash(`lxr1.0123abcd.${'0'.repeat(32)}.${h.slice(2)}`), 'LXR_INVALID_ARGUMENT', /join token is malformed/);
    throwsWith(() => tokenCaHash(`lxrop.0123abcd.${'0'.repeat(32)}`), 'LXR_INVALID_ARGUMENT', /join token is malformed/);
  });

  it('a saved identity is loaded and used; none is null; another name or a token-less TCP join is refused', async () => {
    const { ca } = await CertAuthority.create();
    assert.equal(loadHostIdentity(path.join(await tempDir('host'), 'absent')), null);
    const saved = await root(ca, 'n1');
    assert.equal(loadHostIdentity(saved.dir)?.info.name, 'n1');
    // A certificate beside another key, or a file without both, is refused by name, not used.
    const mixed = await root(ca, 'n1');
    writeFileSync(path.join(mixed.dir, 'pki', 'host.pem'), saved.certPem + mixed.keyPem);
    throwsWith(() => loadHostIdentity(mixed.dir), 'LXR_ILLEGAL_STATE', /host\.pem is not for the key beside it/);
    writeFileSync(path.join(mixed.dir, 'pki', 'host.pem'), saved.certPem);
    throwsWith(() => loadHostIdentity(mixed.dir), 'LXR_ILLEGAL_STATE', /does not hold a certificate and a private key/);
    assert.equal((await hostCredentials(opts(saved.dir))).certPem, saved.certPem);
    await rejectsWith(hostCredentials(opts(saved.dir, { name: 'n2' })), 'LXR_ILLEGAL_STATE', /is for host "n1", not "n2": start with --name n1/);
    await rejectsWith(hostCredentials(opts(await tempDir('host'))), 'LXR_INVALID_ARGUMENT', /joining 127\.0\.0\.1:1 needs a join token/, 'token');
    const expired = await root(ca, 'n1', { notBefore: new Date(Date.now() - 2 * HOUR), ttlSeconds: 60 });
    await rejectsWith(hostCredentials(opts(expired.dir)), 'LXR_UNAUTHENTICATED', /certificate expired at .*join again with --token/);
  });
});

describe('mutual TLS over grpc-js on 127.0.0.1', () => {
  it('a certificate of the CA gets through the policy, a revoked one and a wrong-role server do not', async () => {
    const { trust } = await trustWorld();
    const ctl = await trust.controllerCertificate(['127.0.0.1'], []);
    const server = new grpc.Server();
    const health = new HealthService();
    health.setStatus('', 'SERVING');
    server.addService(controllerServices.Health, health.handlers());
    server.addService(controllerServices.Trust, {});
    const serverId = new TlsIdentity(trust.ca.certPem, ctl.certPem, ctl.keyPem);
    const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', serverId.serverCredentials(true, [authInterceptor(controllerPolicy(trust), log)]), (e, p) => (e ? rej(e) : res(p))));
    const clients: grpc.Client[] = [];
    const track = <C extends grpc.Client>(c: C): C => {
      clients.push(c);
      return c;
    };
    const addr = `127.0.0.1:${port}`;
    const deadline = () => ({ deadline: Date.now() + 10_000 });
    try {
      const { csr, keyPem } = await request({ role: 'host', name: 'n1' });
      const hostCert = (await trust.join({ name: 'n1', csr }, () => false, true)).certificate;
      const hostId = new TlsIdentity(trust.ca.certPem, hostCert, keyPem);
      const toCtl = hostId.channelCredentials(expectIdentity({ role: 'controller', name: '' }));
      const h = track(new HealthClient(addr, toCtl));
      assert.deepEqual(await unary(h, h.Check, { service: '' }, deadline()), { status: 'SERVING' });
      const t = track(new TrustClient(addr, toCtl));
      await rejectsWith(unary(t, t.CreateJoinToken, {}, deadline()).catch((e: unknown) => Promise.reject(fromStatus(e))), 'LXR_PERMISSION_DENIED', /unix socket/);
      const wrong = track(new HealthClient(addr, hostId.channelCredentials(expectIdentity({ role: 'host', name: 'n1' }))));
      await assert.rejects(unary(wrong, wrong.Check, { service: '' }, deadline()), (e: Error) => {
        assert.match(e.message, /the server is the controller, not host "n1"/);
        return true;
      });
      await trust.revokeSerials([hostId.info.serial]);
      const h2 = track(new HealthClient(addr, hostId.channelCredentials(expectIdentity({ role: 'controller', name: '' }))));
      await rejectsWith(unary(h2, h2.Check, { service: '' }, deadline()).catch((e: unknown) => Promise.reject(fromStatus(e))), 'LXR_UNAUTHENTICATED', /host "n1" .* is revoked/);
    } finally {
      for (const c of clients) c.close();
      server.forceShutdown();
    }
  });
});

describe('checks on every call', () => {
  it('a certificate\'s signature is checked once, its lifetime on every call; another CA\'s is refused each time', async () => {
    const { ca } = await CertAuthority.create();
    let caReads = 0;
    const issued = new IssuedCertificates(() => (caReads++, ca.certificate));
    const { certPem } = await leaf(ca, { role: 'controller', name: 'lxr-controller' }, { ttlSeconds: 60 });
    const raw = der(certPem);
    const now = new Date();
    assert.equal(issued.verify(raw, now).role, 'controller');
    assert.equal(issued.verify(raw, now).role, 'controller');
    assert.equal(caReads, 1, 'verified once');
    throwsWith(() => issued.verify(raw, new Date(now.getTime() + 120_000)), 'LXR_UNAUTHENTICATED', /the controller expired at/);
    const other = (await CertAuthority.create()).ca;
    const foreign = der((await leaf(other, { role: 'controller', name: 'lxr-controller' })).certPem);
    for (let i = 0; i < 2; i++) throwsWith(() => issued.verify(foreign, now), 'LXR_UNAUTHENTICATED', /not issued by this cluster's CA/);
  });
});

describe('pinning the controller\'s CA when joining', () => {
  /** A TLS server on 127.0.0.1 presenting `chain` (PEM, leaf first). */
  async function presenting(chain: string, keyPem: string): Promise<{ address: string; close: () => void }> {
    const server = tls.createServer({ cert: chain, key: keyPem }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, close: () => server.close() };
  }

  it('accepts the controller of the pinned CA; refuses another CA, and the pinned CA with a leaf that is not its controller\'s', async () => {
    const { ca } = await CertAuthority.create();
    const ctl = await leaf(ca, { role: 'controller', name: 'lxr-controller' });
    const good = await presenting(`${ctl.certPem.trimEnd()}\n${ca.certPem}`, ctl.keyPem);
    try {
      assert.equal(spkiHash(await pinControllerCa(good.address, ca.hash)), ca.hash);
      await rejectsWith(pinControllerCa(good.address, `sha256:${'ab'.repeat(32)}`), 'LXR_UNAUTHENTICATED', /is not the controller this token is for: none of its certificates has the pinned CA/);
    } finally {
      good.close();
    }
    // The pinned CA sent along, but the server's own certificate is a host's of that CA, or another CA's controller.
    const host = await leaf(ca, { role: 'host', name: 'n1' });
    const other = (await CertAuthority.create()).ca;
    const stranger = await leaf(other, { role: 'controller', name: 'lxr-controller' });
    // (TLS builds the chain from issuers: a stranger's leaf does not lead to the CA sent beside it.)
    for (const [{ certPem, keyPem }, why] of [
      [host, /presents the pinned CA but its own certificate is not the controller's from that CA/],
      [stranger, /is not the controller this token is for: none of its certificates has the pinned CA/],
    ] as const) {
      const s = await presenting(`${certPem.trimEnd()}\n${ca.certPem}`, keyPem);
      try {
        await rejectsWith(pinControllerCa(s.address, ca.hash), 'LXR_UNAUTHENTICATED', why);
      } finally {
        s.close();
      }
    }
    await rejectsWith(pinControllerCa('127.0.0.1:1', ca.hash), 'LXR_UNAVAILABLE', /cannot reach the controller at 127\.0\.0\.1:1/);
    await rejectsWith(pinControllerCa('no-port', ca.hash), 'LXR_INVALID_ARGUMENT', /is not HOST:PORT/);
  });
});

describe('the controller certificate\'s names', () => {
  it('names the hosts it listens on, every local address for a wildcard, and --tls-san; never 0.0.0.0', async () => {
    const { certificateNames } = await import('../../controller/server.js');
    const { localAddresses } = await import('../../controller/trust/trust-service.js');
    const [ips, dns] = certificateNames(['198.18.0.254:7000', '0.0.0.0:7443'], ['ctl.example', '[fd00::1]', '198.18.9.9']);
    for (const ip of ['127.0.0.1', '198.18.0.254', '198.18.9.9', 'fd00::1', ...localAddresses()]) assert.ok(ips.includes(ip), `${ip} in ${ips}`);
    assert.deepEqual(dns.sort(), ['ctl.example', 'localhost']);
    assert.ok(!ips.includes('0.0.0.0'));
    // A specific address only: the machine's other addresses are not claimed.
    const [only] = certificateNames(['198.18.0.254:7000', undefined], []);
    assert.deepEqual(only.sort(), ['127.0.0.1', '198.18.0.254']);
    const [wild] = certificateNames(['[::]:7000'], []);
    assert.deepEqual(wild.sort(), [...new Set(['127.0.0.1', ...localAddresses()])].sort());
  });
});

describe('joining a controller that does not answer yet', () => {
  it('is tried again while the controller is unavailable; any other refusal, or an abort, ends it', async () => {
    const { whileUnavailable } = await import('../../agent/cluster/join.js');
    const log = rootLogger('join-test', 'silent');
    let calls = 0;
    const flaky = async (): Promise<string> => {
      if (++calls < 3) throw new LxrError('LXR_UNAVAILABLE', 'cannot reach the controller');
      return 'joined';
    };
    assert.equal(await whileUnavailable(flaky, 'c:1', log), 'joined');
    assert.equal(calls, 3);
    let refused = 0;
    await rejectsWith(whileUnavailable(async () => (refused++, Promise.reject(new LxrError('LXR_UNAUTHENTICATED', 'the join token is malformed'))), 'c:1', log), 'LXR_UNAUTHENTICATED', /malformed/);
    assert.equal(refused, 1, 'not tried again');
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 400);
    await rejectsWith(whileUnavailable(async () => Promise.reject(new LxrError('LXR_UNAVAILABLE', 'still down')), 'c:1', log, ac.signal), 'LXR_UNAVAILABLE', /still down/);
  });
});
