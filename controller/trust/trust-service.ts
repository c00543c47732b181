// Who may talk to the cluster. The controller keeps a certificate authority
// (its key in <root>/pki, mode 0600), issues join tokens that let a new host
// trade a key of its own for a certificate, issues people's credentials
// (bearer tokens or client certificates) and revokes them. Every call on
// the TCP port is authenticated here: a certificate of this CA that is in
// its lifetime and not revoked, or a live token. Secrets are kept only as
// sha256 hashes; tokens carry a random id so they can be found and revoked.
import { isDnsLabel } from '../../proto/shared/names.js';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LxrError, invalidArgument, unauthenticated } from '../../proto/shared/errors.js';
import { formatJoinToken, parseJoinToken } from '../../proto/shared/join-token.js';
import type { Logger } from '../../proto/shared/log.js';
import { checkDnsLabel } from '../../proto/shared/names.js';
import { CertAuthority, certInfo, csrPublicKey, describeIdentity, IssuedCertificates, newKeyPem, type CertInfo, type Identity } from '../../proto/shared/pki.js';
import type { Credential } from '../../proto/shared/controller-types.js';
import type { Store } from '../store/index.js';

const DAY = 86400;
export const DEFAULT_JOIN_TTL = DAY;
export const DEFAULT_CREDENTIAL_TTL = 30 * DAY;
export const DEFAULT_CERT_TTL = 30 * DAY;
const MAX_TTL = 10 * 365 * DAY;

/** People's bearer tokens: lxrop.ID.SECRET. */
function parseOperatorToken(token: string): { id: string; secret: string } | null {
  const m = /^lxrop\.([0-9a-f]{8})\.([0-9a-f]{32})$/.exec(token);
  return m ? { id: m[1]!, secret: m[2]! } : null;
}

interface JoinRecord {
  id: string;
  secretHash: string;
  createdAt: string;
  expiresAt: string;
}

interface CredentialRecord {
  id: string;
  name: string;
  kind: 'token' | 'certificate';
  /** token: sha256 of the secret; certificate: its serial. */
  secretHash?: string;
  serial?: string;
  createdAt: string;
  expiresAt: string;
  revoked: boolean;
}

/** What is shown of a credential: never its secret. */
export type CredentialView = Credential;

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
const sameHash = (a: string, b: string): boolean => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
const hex = (n: number): string => randomBytes(n).toString('hex');

function ttl(v: number | undefined, dflt: number, field: string): number {
  if (v === undefined || v === 0) return dflt;
  if (!Number.isInteger(v) || v < 1 || v > MAX_TTL) throw invalidArgument(field, `must be 1 to ${MAX_TTL} seconds, got ${v}`);
  return v;
}

/** The addresses a certificate of this machine should name: every IPv4 address it has. */
export function localAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a): a is os.NetworkInterfaceInfo => !!a && a.family === 'IPv4')
    .map((a) => a.address);
}

export interface TrustOptions {
  store: Store;
  /** <controller root>/pki: the CA's key and certificate. */
  dir: string;
  log: Logger;
  /** Lifetime of host and controller certificates (renewed at two thirds). */
  certTtlSeconds?: number;
  now?: () => Date;
}

export class TrustService {
  private readonly revokedSerials = new Set<string>();
  private readonly hostLocks = new Map<string, Promise<void>>();
  private readonly issued: IssuedCertificates;
  private readonly credentials = new Map<string, CredentialRecord>();
  private readonly now: () => Date;
  readonly certTtlSeconds: number;

  private constructor(
    private readonly o: TrustOptions,
    readonly ca: CertAuthority,
  ) {
    this.now = o.now ?? (() => new Date());
    this.certTtlSeconds = o.certTtlSeconds ?? DEFAULT_CERT_TTL;
    this.issued = new IssuedCertificates(() => ca.certificate);
  }

  /** Loads the CA from `dir`, or makes one the first time; loads credentials from the store. */
  static async open(o: TrustOptions): Promise<TrustService> {
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    const certFile = path.join(o.dir, 'ca.crt');
    const keyFile = path.join(o.dir, 'ca.key');
    let ca: CertAuthority;
    if (existsSync(certFile) && existsSync(keyFile)) {
      ca = await CertAuthority.load(readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8'));
    } else {
      const made = await CertAuthority.create();
      writeFileSync(keyFile, made.keyPem, { mode: 0o600 });
      writeFileSync(certFile, made.ca.certPem, { mode: 0o644 });
      ca = made.ca;
      o.log.info({ ca: ca.hash }, 'made the cluster CA');
    }
    const t = new TrustService(o, ca);
    for (const r of await o.store.list<CredentialRecord>('trust/credentials/')) {
      t.credentials.set(r.value.id, r.value);
      if (r.value.revoked && r.value.serial) t.revokedSerials.add(r.value.serial);
    }
    for (const r of await o.store.list<{ serial: string }>('trust/revoked/')) t.revokedSerials.add(r.value.serial);
    return t;
  }

  /** The controller's own key and certificate (server and client), made fresh at each start. */
  async controllerCertificate(ips: string[], dns: string[]): Promise<{ certPem: string; keyPem: string }> {
    const keyPem = newKeyPem();
    const certPem = await this.ca.issue({ publicKey: keyPem, id: { role: 'controller', name: 'lxr-controller' }, ttlSeconds: this.certTtlSeconds, ips, dns: ['lxr-controller', ...dns] });
    return { certPem, keyPem };
  }

  // ------------------------------------------------------------ join tokens

  async createJoinToken(ttlSeconds?: number): Promise<{ token: string; id: string; expiresAt: string }> {
    const life = ttl(ttlSeconds, DEFAULT_JOIN_TTL, 'ttl_seconds');
    const id = hex(4);
    const secret = hex(16);
    const now = this.now();
    const rec: JoinRecord = { id, secretHash: sha256(secret), createdAt: now.toISOString(), expiresAt: new Date(now.getTime() + life * 1000).toISOString() };
    await this.o.store.commit([{ type: 'put', key: `trust/join/${id}`, value: rec, expect: 0 }]);
    return { token: formatJoinToken({ id, secret, caHash: this.ca.hash }), id, expiresAt: rec.expiresAt };
  }

  /**
   * A host proves a join token and gets a certificate for its own key. A
   * name that is already a member is refused: a token lets machines in, it
   * does not let them take another host's place.
   */
  async join(req: { token?: string; name?: string; csr?: string; addresses?: string[] }, isMember: (name: string) => boolean, local = false): Promise<{ certificate: string; ca: string; notAfter: string }> {
    const name = checkDnsLabel(req.name, 'name');
    if (!(local && !req.token)) {
      const tok = parseJoinToken(req.token ?? '');
      if (tok.caHash !== this.ca.hash) throw unauthenticated(`the join token was made for another cluster: it pins the CA ${tok.caHash}, this controller's is ${this.ca.hash}`);
      const rec = (await this.o.store.get<JoinRecord>(`trust/join/${tok.id}`))?.value;
      if (!rec || !sameHash(rec.secretHash, sha256(tok.secret))) throw unauthenticated(`the join token ${tok.id} is not valid here (unknown, deleted, or a wrong secret): make one with lxr-controller token create`);
      if (this.now() > new Date(rec.expiresAt)) throw unauthenticated(`the join token ${tok.id} expired at ${rec.expiresAt}: make a new one with lxr-controller token create`);
    }
    const ips = (req.addresses ?? []).filter((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a));
    return this.underHostLock(name, async () => {
      if (isMember(name)) throw new LxrError('LXR_ALREADY_EXISTS', `host ${name} is already a member of the cluster: a new machine cannot join under its name until it is removed (lxrctl hosts rm ${name})`, { field: 'name' });
      // Nor while a machine that joined under it holds a valid certificate and has not registered yet.
      const live = (await this.hostCertificates(name)).find((r) => new Date(r.notAfter) > this.now() && !this.revokedSerials.has(r.serial));
      if (live) throw new LxrError('LXR_ALREADY_EXISTS', `a machine joined as host ${name} (its certificate is valid until ${live.notAfter}) and has not registered yet: join under another name, or revoke that join (lxrctl hosts rm ${name})`, { field: 'name' });
      return this.issue({ role: 'host', name }, req.csr ?? '', ips);
    });
  }

  /**
   * Joins, renewals and revocations of one host name run one at a time: a
   * renewal that passed the gate just before the host was removed must not
   * issue a certificate that the removal did not see.
   */
  private async underHostLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.hostLocks.get(name) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.hostLocks.set(name, tail);
    try {
      return await run;
    } finally {
      if (this.hostLocks.get(name) === tail) this.hostLocks.delete(name);
    }
  }

  private async hostCertificates(name: string): Promise<Array<{ serial: string; notAfter: string }>> {
    return (await this.o.store.list<{ serial: string; notAfter: string }>(`trust/hosts/${name}/`)).map((r) => r.value);
  }

  /** A new certificate with the caller's identity, for a key the caller proves it holds. */
  /**
   * `caller` is the host's certificate the call came with (serial included),
   * or for root on the unix socket the host it names. The host must be a
   * member (its addresses, for the certificate, come from its registration),
   * and, checked again under the lock, its certificate not revoked meanwhile.
   */
  async renew(caller: Identity & { serial?: string }, csr: string, member: (name: string) => { ips: string[] } | null): Promise<{ certificate: string; ca: string; notAfter: string }> {
    if (caller.role !== 'host') throw new LxrError('LXR_PERMISSION_DENIED', `${describeIdentity(caller)} cannot renew here: people ask for a new credential`);
    return this.underHostLock(caller.name, async () => {
      if (caller.serial && this.revokedSerials.has(caller.serial)) throw unauthenticated(`the certificate of ${describeIdentity(caller)} (serial ${caller.serial}) is revoked`);
      const m = member(caller.name);
      if (!m) throw new LxrError('LXR_NOT_FOUND', `host ${caller.name} is not a member of the cluster (removed?): join again with a token`);
      return this.issue(caller, csr, m.ips);
    });
  }

  private async issue(id: Identity, csr: string, ips: string[]): Promise<{ certificate: string; ca: string; notAfter: string }> {
    const publicKey = await csrPublicKey(csr);
    const certificate = await this.ca.issue({ publicKey, id, ttlSeconds: this.certTtlSeconds, ips, dns: [id.name] });
    // Kept so that removing the host revokes what it was issued.
    // (expired ones are dropped: nothing accepts them any more)
    const { serial, notAfter } = certInfo(certificate)!;
    const expired = (await this.o.store.list<{ notAfter: string }>(`trust/hosts/${id.name}/`)).filter((r) => new Date(r.value.notAfter) < this.now());
    await this.o.store.commit([{ type: 'put', key: `trust/hosts/${id.name}/${serial}`, value: { serial, notAfter: notAfter.toISOString() } }, ...expired.map((r) => ({ type: 'delete' as const, key: r.key }))]);
    this.o.log.info({ role: id.role, name: id.name, serial }, 'issued a certificate');
    return { certificate, ca: this.ca.certPem, notAfter: notAfter.toISOString() };
  }

  // ------------------------------------------------------------ people

  async createCredential(req: { name?: string; ttlSeconds?: number; csr?: string }): Promise<{ token: string; certificate: string; ca: string; id: string; expiresAt: string }> {
    const name = checkDnsLabel(req.name, 'name');
    const life = ttl(req.ttlSeconds, DEFAULT_CREDENTIAL_TTL, 'ttl_seconds');
    const now = this.now();
    const expiresAt = new Date(now.getTime() + life * 1000).toISOString();
    const id = hex(4);
    let out = { token: '', certificate: '', ca: this.ca.certPem, id, expiresAt };
    let rec: CredentialRecord;
    if (req.csr) {
      const publicKey = await csrPublicKey(req.csr);
      const certificate = await this.ca.issue({ publicKey, id: { role: 'operator', name }, ttlSeconds: life });
      const serial = certInfo(certificate)!.serial;
      rec = { id, name, kind: 'certificate', serial, createdAt: now.toISOString(), expiresAt, revoked: false };
      out = { ...out, certificate };
    } else {
      const secret = hex(16);
      rec = { id, name, kind: 'token', secretHash: sha256(secret), createdAt: now.toISOString(), expiresAt, revoked: false };
      out = { ...out, token: `lxrop.${id}.${secret}` };
    }
    await this.o.store.commit([{ type: 'put', key: `trust/credentials/${id}`, value: rec, expect: 0 }]);
    this.credentials.set(id, rec);
    return out;
  }

  listCredentials(): CredentialView[] {
    return [...this.credentials.values()].map(view).sort((a, b) => a.name.localeCompare(b.name) || a.createdAt.localeCompare(b.createdAt));
  }

  /** Revokes every credential of `name`. */
  async revoke(name: string | undefined): Promise<CredentialView[]> {
    const who = checkDnsLabel(name, 'name');
    const mine = [...this.credentials.values()].filter((c) => c.name === who && !c.revoked);
    if (!mine.length) {
      if (![...this.credentials.values()].some((c) => c.name === who)) throw new LxrError('LXR_NOT_FOUND', `no credential of ${JSON.stringify(who)}: lxrctl credentials ls lists them`);
      return [];
    }
    const changed = mine.map((c) => ({ ...c, revoked: true }));
    await this.o.store.commit(changed.map((c) => ({ type: 'put' as const, key: `trust/credentials/${c.id}`, value: c })));
    for (const c of changed) {
      this.credentials.set(c.id, c);
      if (c.serial) this.revokedSerials.add(c.serial);
    }
    this.o.log.info({ name: who, credentials: changed.map((c) => c.id) }, 'revoked');
    return changed.map(view);
  }

  /**
   * A removed host's certificates are refused from then on: the machine
   * cannot register again with them, and only a new join lets a machine in
   * under that name.
   */
  async revokeHost(name: string): Promise<number> {
    // Host names are DNS labels; anything else names no store key (and holds nothing).
    if (!isDnsLabel(name)) return 0;
    return this.underHostLock(name, async () => {
      const issued = await this.o.store.list<{ serial: string }>(`trust/hosts/${name}/`);
      if (!issued.length) return 0;
      await this.revokeSerials(issued.map((r) => r.value.serial));
      await this.o.store.commit(issued.map((r) => ({ type: 'delete' as const, key: r.key })));
      this.o.log.info({ host: name, certificates: issued.length }, 'revoked the certificates of a host');
      return issued.length;
    });
  }

  async revokeSerials(serials: string[]): Promise<void> {
    const fresh = serials.filter((s) => !this.revokedSerials.has(s));
    if (!fresh.length) return;
    await this.o.store.commit(fresh.map((serial) => ({ type: 'put' as const, key: `trust/revoked/${serial}`, value: { serial } })));
    for (const s of fresh) this.revokedSerials.add(s);
  }

  // ------------------------------------------------------------ every call

  /**
   * Who is calling: the client certificate (verified against the CA, in its
   * lifetime, not revoked) or else a bearer token. Null when neither is
   * offered (only Join may be called so).
   */
  authenticate(peerCert: Buffer | undefined, authorization: string | undefined): CertInfo | null {
    const now = this.now();
    if (peerCert) {
      const info = this.issued.verify(peerCert, now);
      if (this.revokedSerials.has(info.serial)) throw unauthenticated(`the certificate of ${describeIdentity(info)} (serial ${info.serial}) is revoked`);
      return info;
    }
    if (authorization) {
      const m = /^Bearer\s+(\S+)$/i.exec(authorization);
      const tok = m ? parseOperatorToken(m[1]!) : null;
      if (!tok) throw unauthenticated('the bearer token is malformed: people\'s tokens look like lxrop.ID.SECRET');
      const rec = this.credentials.get(tok.id);
      if (!rec || rec.kind !== 'token' || !rec.secretHash || !sameHash(rec.secretHash, sha256(tok.secret))) throw unauthenticated(`the token ${tok.id} is not valid here`);
      if (rec.revoked) throw unauthenticated(`the token ${tok.id} of ${JSON.stringify(rec.name)} is revoked`);
      if (now > new Date(rec.expiresAt)) throw unauthenticated(`the token ${tok.id} of ${JSON.stringify(rec.name)} expired at ${rec.expiresAt}`);
      return { role: 'operator', name: rec.name, serial: '', notBefore: new Date(rec.createdAt), notAfter: new Date(rec.expiresAt) };
    }
    return null;
  }
}

function view(c: CredentialRecord): CredentialView {
  return { id: c.id, name: c.name, kind: c.kind, createdAt: c.createdAt, expiresAt: c.expiresAt, revoked: c.revoked };
}
