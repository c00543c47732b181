// Reading the cluster's certificates: who a certificate names (its role in
// the organisation, its holder in the common name), its serial and
// lifetime, the hash a join token pins a CA by, and whether a certificate
// was issued by the CA and is in its lifetime. Node's crypto only, so that
// lxrctl can check its controller without the library that makes them
// (proto/shared/pki.ts).
import { createHash, X509Certificate } from 'node:crypto';
import { unauthenticated } from './errors.js';

/** Who holds a certificate: the organisation names the role, the common name the holder. */
export type Role = 'controller' | 'host' | 'operator';
export const ORG: Record<Role, string> = { controller: 'lxr:controller', host: 'lxr:host', operator: 'lxr:operator' };
const ROLE_OF = new Map(Object.entries(ORG).map(([r, o]) => [o, r as Role]));

export interface Identity {
  role: Role;
  name: string;
}

export interface CertInfo extends Identity {
  /** Lowercase hex, as revocation lists name it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export const describeIdentity = (id: Identity): string => (id.role === 'controller' ? 'the controller' : `${id.role} ${JSON.stringify(id.name)}`);

/** Role, name, serial and validity of a certificate (PEM or DER); null when it carries no LXR role. */
export function certInfo(cert: string | Buffer | X509Certificate): CertInfo | null {
  const c = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  const fields = new Map<string, string>();
  for (const line of c.subject.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) fields.set(line.slice(0, i), line.slice(i + 1));
  }
  const role = ROLE_OF.get(fields.get('O') ?? '');
  if (!role) return null;
  // Node prints RFC 4514 escapes (\, for a comma): the name as issued has none.
  return { role, name: (fields.get('CN') ?? '').replace(/\\(.)/g, '$1'), serial: c.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''), notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo) };
}

/** sha256 of the certificate's SubjectPublicKeyInfo, as kubeadm pins its CA: `sha256:HEX`. */
export function spkiHash(cert: string | Buffer | X509Certificate): string {
  const c = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  return 'sha256:' + createHash('sha256').update(c.publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
}

/**
 * Checks that `cert` was issued by `ca` and is valid at `now`; returns who it
 * names. Every refusal says what was wrong, for the person who reads it.
 */
export function verifyIssued(cert: string | Buffer, ca: X509Certificate, now = new Date()): CertInfo {
  let c: X509Certificate;
  try {
    c = new X509Certificate(cert);
  } catch {
    throw unauthenticated('the client certificate cannot be read');
  }
  if (!c.checkIssued(ca) || !c.verify(ca.publicKey)) throw unauthenticated(`the certificate of ${JSON.stringify(c.subject.replace(/\n/g, ', '))} is not issued by this cluster's CA`);
  const info = certInfo(c);
  if (!info) throw unauthenticated(`the certificate of ${JSON.stringify(c.subject.replace(/\n/g, ', '))} names no LXR role`);
  return inLifetime(info, now);
}

function inLifetime(info: CertInfo, now: Date): CertInfo {
  if (now < info.notBefore) throw unauthenticated(`the certificate of ${describeIdentity(info)} is not valid before ${info.notBefore.toISOString()}`);
  if (now > info.notAfter) throw unauthenticated(`the certificate of ${describeIdentity(info)} expired at ${info.notAfter.toISOString()}`);
  return info;
}

/**
 * verifyIssued for every call of a server: the certificate is parsed and
 * its signature checked once (peers present the same one on each call of a
 * connection), its lifetime on every call.
 */
export class IssuedCertificates {
  private readonly seen = new Map<string, CertInfo>();

  constructor(private readonly ca: () => X509Certificate) {}

  verify(cert: Buffer, now = new Date()): CertInfo {
    const key = cert.toString('base64');
    const hit = this.seen.get(key);
    if (hit) return inLifetime(hit, now);
    const info = verifyIssued(cert, this.ca(), now);
    // Bounded: a long-lived server meets each renewed certificate once.
    if (this.seen.size >= 1024) this.seen.clear();
    this.seen.set(key, info);
    return info;
  }
}

