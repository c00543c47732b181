// Mutual TLS for every TCP connection between LXR components. A TlsIdentity
// is this process's key, certificate and the cluster CA, handed to grpc-js
// as a certificate provider: when the certificate is renewed, new
// connections use the new one and open connections (running exec sessions)
// are left alone. Peers are checked by the identity their certificate names
// (role and name), not by host name: the cluster's own CA issues them all.
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { certInfo, describeIdentity, type CertInfo, type Identity } from './cert-info.js';
import { LxrError } from './errors.js';

type CaListener = (u: { caCertificate: Buffer } | null) => void;
type IdListener = (u: { certificate: Buffer; privateKey: Buffer } | null) => void;

export class TlsIdentity implements grpc.experimental.CertificateProvider {
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();
  private cur: { caPem: string; certPem: string; keyPem: string; info: CertInfo };

  constructor(caPem: string, certPem: string, keyPem: string) {
    this.cur = { caPem, certPem, keyPem, info: TlsIdentity.infoOf(certPem) };
  }

  private static infoOf(certPem: string): CertInfo {
    const info = certInfo(certPem);
    if (!info) throw new LxrError('LXR_INVALID_ARGUMENT', 'the certificate names no LXR role (O=lxr:controller, lxr:host or lxr:operator)');
    return info;
  }

  get info(): CertInfo {
    return this.cur.info;
  }
  get caPem(): string {
    return this.cur.caPem;
  }
  get certPem(): string {
    return this.cur.certPem;
  }
  get keyPem(): string {
    return this.cur.keyPem;
  }
  /** The certificate followed by the CA: what is sent to peers, so a joining agent can pin the CA by hash. */
  get chainPem(): string {
    return this.cur.certPem.trimEnd() + '\n' + this.cur.caPem;
  }
  /** Parsed once: agents check every call against it. */
  get ca(): X509Certificate {
    return (this.caCert ??= new X509Certificate(this.cur.caPem));
  }
  private caCert: X509Certificate | undefined;

  /** A renewed certificate (and key): used from the next connection on. */
  update(certPem: string, keyPem: string): void {
    this.cur = { ...this.cur, certPem, keyPem, info: TlsIdentity.infoOf(certPem) };
    for (const l of this.idListeners) l(this.identityUpdate());
  }

  private identityUpdate() {
    return { certificate: Buffer.from(this.chainPem), privateKey: Buffer.from(this.cur.keyPem) };
  }

  // The first update is delivered a moment later, not from inside add...():
  // grpc-js's server registers its watcher only after adding these listeners,
  // and would miss an update given at once (and then drop every connection).
  addCaCertificateListener(l: CaListener): void {
    this.caListeners.add(l);
    queueMicrotask(() => {
      if (this.caListeners.has(l)) l({ caCertificate: Buffer.from(this.cur.caPem) });
    });
  }
  removeCaCertificateListener(l: CaListener): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: IdListener): void {
    this.idListeners.add(l);
    queueMicrotask(() => {
      if (this.idListeners.has(l)) l(this.identityUpdate());
    });
  }
  removeIdentityCertificateListener(l: IdListener): void {
    this.idListeners.delete(l);
  }

  /**
   * Server side. `requireClientCertificate`: refuse at the handshake any
   * client without a certificate of this CA (an agent's port). Without it,
   * the certificate is asked for but checked per call (the controller's port,
   * where joining agents and token holders have none).
   */
  serverCredentials(requireClientCertificate: boolean, interceptors: grpc.ServerInterceptor[] = []): grpc.ServerCredentials {
    // grpc-js names its two parameters the other way round from how it uses them; one object serves both.
    const creds = grpc.experimental.createCertificateProviderServerCredentials(this, this, requireClientCertificate);
    return interceptors.length ? grpc.experimental.createServerCredentialsWithInterceptors(creds, interceptors) : creds;
  }

  /** Client side: this identity's certificate, and a server that must be `expected`. */
  channelCredentials(expected: (peer: CertInfo) => string | null): grpc.ChannelCredentials {
    return grpc.experimental.createCertificateProviderChannelCredentials(this, this, { checkServerIdentity: identityCheck(expected) });
  }
}

/**
 * A checkServerIdentity that compares the identity in the server's
 * certificate (already verified against the CA by TLS) with what the caller
 * expects; `expected` returns a problem or null.
 */
export function identityCheck(expected: (peer: CertInfo) => string | null): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const info = cert.raw ? certInfo(cert.raw) : null;
    if (!info) return new Error('the server\'s certificate names no LXR role');
    const problem = expected(info);
    return problem ? new Error(problem) : undefined;
  };
}

/** Channel options for a TLS peer known by address: its certificate names it `lxr-controller` or by host name. */
export const tlsNameOptions = (name: string): { 'grpc.ssl_target_name_override': string } => ({ 'grpc.ssl_target_name_override': name });

/** An `expected` for identityCheck: exactly this identity. */
export const expectIdentity =
  (want: Identity) =>
  (peer: CertInfo): string | null =>
    peer.role === want.role && (want.role === 'controller' || peer.name === want.name) ? null : `the server is ${describeIdentity(peer)}, not ${describeIdentity(want)}`;

/** The cluster's controller, whatever address it is reached at. */
export const expectController = expectIdentity({ role: 'controller', name: '' });
