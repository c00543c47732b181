// The cluster's public-key infrastructure: one certificate authority held by
// the controller, and leaf certificates that say who their holder is (the
// controller, a host by name, or an operator by name). Keys are ECDSA P-256
// made by Node's crypto (OpenSSL); certificates and requests are built by
// @peculiar/x509 over WebCrypto. Nothing here is hand-rolled crypto: this
// module only decides names, lifetimes and extensions, and reads them back.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { ORG, spkiHash, verifyIssued, type CertInfo, type Identity } from './cert-info.js';
import { LxrError } from './errors.js';

export * from './cert-info.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** A new private key, PKCS#8 PEM. It never leaves the machine that made it. */
export function newKeyPem(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

async function keyPair(keyPem: string): Promise<CryptoKeyPair> {
  const priv = createPrivateKey(keyPem);
  const pkcs8 = priv.export({ type: 'pkcs8', format: 'der' });
  const spki = createPublicKey(priv).export({ type: 'spki', format: 'der' });
  return {
    privateKey: await webcrypto.subtle.importKey('pkcs8', pkcs8, ALG, false, ['sign']),
    publicKey: await webcrypto.subtle.importKey('spki', spki, ALG, true, ['verify']),
  } as CryptoKeyPair;
}

/** A certificate signing request for the key (proof that the sender holds it). */
export async function makeCsr(keyPem: string, id: Identity): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: subjectOf(id), keys: await keyPair(keyPem), signingAlgorithm: ALG });
  return csr.toString('pem');
}

/** The public key of a request whose signature checks out; anything else is refused by name. */
export async function csrPublicKey(csrPem: string, field = 'csr'): Promise<x509.PublicKey> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (e) {
    throw new LxrError('LXR_INVALID_ARGUMENT', `${field} is not a PEM certificate signing request: ${(e as Error).message}`, { field });
  }
  if (!(await csr.verify())) throw new LxrError('LXR_INVALID_ARGUMENT', `${field}: the request's signature does not match its key`, { field });
  if ((csr.publicKey.algorithm as EcKeyAlgorithm).namedCurve !== 'P-256') throw new LxrError('LXR_INVALID_ARGUMENT', `${field}: the key must be ECDSA P-256`, { field });
  return csr.publicKey;
}

const escapeRdn = (v: string): string => v.replace(/([,+"\\<>;=#])/g, '\\$1');
const subjectOf = (id: Identity): string => `CN=${escapeRdn(id.name)}, O=${ORG[id.role]}`;

export interface IssueOptions {
  /** The holder's public key: from a verified request, or PEM. */
  publicKey: x509.PublicKey | string;
  id: Identity;
  ttlSeconds: number;
  /** Addresses and names a TLS client may know the holder by. */
  ips?: string[];
  dns?: string[];
  /** Valid from then for ttlSeconds (tests: a certificate of another time); default from now, back-dated a minute. */
  notBefore?: Date;
}

/** The cluster's CA: its key signs every leaf; its certificate is what everyone pins. */
export class CertAuthority {
  readonly certificate: X509Certificate;
  private constructor(
    readonly certPem: string,
    private readonly key: CryptoKey,
  ) {
    this.certificate = new X509Certificate(certPem);
  }

  /** A new CA, valid for ten years. Returns it with its key (PEM) for the caller to keep. */
  /** (Each CA gets a name of its own: TLS libraries look issuers up by name, and two clusters' CAs must not be confused.) */
  static async create(commonName = `lxr-cluster-ca-${randomBytes(4).toString('hex')}`): Promise<{ ca: CertAuthority; keyPem: string }> {
    const keyPem = newKeyPem();
    const keys = await keyPair(keyPem);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=${escapeRdn(commonName)}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 10 * 365 * 86400_000),
      keys,
      signingAlgorithm: ALG,
      extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
    });
    return { ca: new CertAuthority(cert.toString('pem'), keys.privateKey), keyPem };
  }

  static async load(certPem: string, keyPem: string): Promise<CertAuthority> {
    return new CertAuthority(certPem, (await keyPair(keyPem)).privateKey);
  }

  /** sha256:HEX of the CA's public key: what a join token carries. */
  get hash(): string {
    return spkiHash(this.certificate);
  }

  async issue(o: IssueOptions): Promise<string> {
    // Valid from a minute ago (clocks differ a little) for ttlSeconds from now.
    const now = Date.now();
    const notBefore = o.notBefore ?? new Date(now - 60_000);
    const names: x509.JsonGeneralName[] = [...(o.dns ?? []).map((value) => ({ type: 'dns' as const, value })), ...(o.ips ?? []).map((value) => ({ type: 'ip' as const, value }))];
    const eku = o.id.role === 'operator' ? [CLIENT_AUTH] : [SERVER_AUTH, CLIENT_AUTH];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: subjectOf(o.id),
      issuer: new x509.X509Certificate(this.certPem).subject,
      notBefore,
      notAfter: new Date((o.notBefore ? notBefore.getTime() : now) + o.ttlSeconds * 1000),
      signingKey: this.key,
      publicKey: typeof o.publicKey === 'string' ? new x509.PublicKey(createPublicKey(o.publicKey).export({ type: 'spki', format: 'der' })) : o.publicKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(eku),
        ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      ],
    });
    return cert.toString('pem');
  }

  verify(cert: string | Buffer, now = new Date()): CertInfo {
    return verifyIssued(cert, this.certificate, now);
  }
}

/** A positive 128-bit serial: unique without a counter to keep. */
function serial(): string {
  const b = randomBytes(16);
  b[0]! &= 0x7f;
  b[0]! |= 0x10;
  return b.toString('hex');
}
