// A host's credentials in the cluster: its own key (made here; it never
// leaves the host), the certificate the controller issued for it, and the
// cluster CA, all in <root>/pki. A new host gets them by joining with a
// token. The token pins the controller's CA by hash (as kubeadm does): the
// agent first reads the certificate chain the server presents, accepts the
// server only if the chain holds a CA with that hash and the server's
// certificate is the controller's from it, and only then sends its request.
import { createPublicKey, X509Certificate } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_OPTIONS, TrustClient, unary } from '../../proto/shared/api.js';
import { LxrError, unauthenticated } from '../../proto/shared/errors.js';
import { parseJoinToken } from '../../proto/shared/join-token.js';
import { fromStatus } from '../../proto/shared/grpc-errors.js';
import type { Logger } from '../../proto/shared/log.js';
import { certInfo, makeCsr, newKeyPem, spkiHash } from '../../proto/shared/pki.js';
import { Renewal } from '../../proto/shared/renewal.js';
import { expectController, identityCheck, TlsIdentity, tlsNameOptions } from '../../proto/shared/tls.js';

/** host.pem: the certificate and its key in one file, replaced in one rename, so they always match. */
const FILES = { identity: 'host.pem', ca: 'ca.crt' } as const;
const pkiDir = (root: string): string => path.join(root, 'pki');

/** This host's saved identity, or null when it has not joined yet. */
export function loadHostIdentity(root: string): TlsIdentity | null {
  const dir = pkiDir(root);
  let ca: string;
  let pem: string;
  try {
    ca = readFileSync(path.join(dir, FILES.ca), 'utf8');
    pem = readFileSync(path.join(dir, FILES.identity), 'utf8');
  } catch {
    return null;
  }
  const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(pem)?.[0];
  const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/.exec(pem)?.[0];
  const file = path.join(dir, FILES.identity);
  if (!cert || !key) throw new LxrError('LXR_ILLEGAL_STATE', `${file} does not hold a certificate and a private key: remove ${dir} and join again with a token`);
  const certKey = new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' });
  if (!certKey.equals(createPublicKey(key).export({ type: 'spki', format: 'der' }))) throw new LxrError('LXR_ILLEGAL_STATE', `the certificate in ${file} is not for the key beside it: remove ${dir} and join again with a token`);
  return new TlsIdentity(ca, cert, key);
}

/** Written beside, flushed, then renamed over: a crash leaves the old file or the new, whole. */
function save(root: string, name: string, content: string, mode: number): void {
  const dir = pkiDir(root);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, name);
  const fd = openSync(`${file}.tmp`, 'w', mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(`${file}.tmp`, file);
}

function saveIdentity(root: string, caPem: string, certPem: string, keyPem: string): void {
  save(root, FILES.ca, caPem, 0o644);
  save(root, FILES.identity, certPem.trimEnd() + '\n' + keyPem, 0o600);
}

/**
 * The CA the controller at `address` (HOST:PORT) presents, if it is the one
 * `caHash` pins and the server's own certificate is the controller's from it.
 */
export function pinControllerCa(address: string, caHash: string, timeoutMs = 10_000): Promise<string> {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) return Promise.reject(new LxrError('LXR_INVALID_ARGUMENT', `the controller address ${JSON.stringify(address)} is not HOST:PORT`, { field: 'join' }));
  const host = m[1]!.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port: Number(m[2]), rejectUnauthorized: false, ALPNProtocols: ['h2'], ...(isIP(host) ? {} : { servername: host }) });
    const t = setTimeout(() => s.destroy(new Error('no TLS answer in time')), timeoutMs);
    s.once('error', (e) => {
      clearTimeout(t);
      reject(new LxrError('LXR_UNAVAILABLE', `cannot reach the controller at ${address}: ${e.message}`));
    });
    s.once('secureConnect', () => {
      clearTimeout(t);
      const chain: X509Certificate[] = [];
      let c = s.getPeerCertificate(true);
      for (let i = 0; c?.raw && i < 8; i++) {
        chain.push(new X509Certificate(c.raw));
        if (!c.issuerCertificate || c.issuerCertificate === c) break;
        c = c.issuerCertificate;
      }
      s.destroy();
      const ca = chain.find((x) => spkiHash(x) === caHash);
      const leaf = chain[0];
      if (!ca || !leaf) return reject(unauthenticated(`the server at ${address} is not the controller this token is for: none of its certificates has the pinned CA ${caHash}${chain.length ? ` (it presents ${chain.map((x) => spkiHash(x)).join(', ')})` : ''}`));
      if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey) || certInfo(leaf)?.role !== 'controller') return reject(unauthenticated(`the server at ${address} presents the pinned CA but its own certificate is not the controller's from that CA`));
      resolve(ca.toString());
    });
  });
}

export interface JoinCredentialsOptions {
  root: string;
  /** HOST:PORT, or unix:///path (the controller's root-only socket: no token needed). */
  controller: string;
  token?: string;
  name: string;
  /** IPv4 addresses for the certificate (the advertised one). */
  addresses: string[];
  log: Logger;
}

/**
 * The host's identity: the saved one, or a new one from joining. A saved
 * certificate of another name, or one that has expired, needs a new join.
 */
export async function hostCredentials(o: JoinCredentialsOptions): Promise<TlsIdentity> {
  const saved = loadHostIdentity(o.root);
  if (saved) {
    const { name, notAfter } = saved.info;
    if (name !== o.name) throw new LxrError('LXR_ILLEGAL_STATE', `this host's certificate (${path.join(pkiDir(o.root), FILES.identity)}) is for host ${JSON.stringify(name)}, not ${JSON.stringify(o.name)}: start with --name ${name}, or remove ${pkiDir(o.root)} and join again with a token`);
    if (notAfter.getTime() > Date.now()) return saved;
    if (!o.token) throw unauthenticated(`this host's certificate expired at ${notAfter.toISOString()}: join again with --token (lxr-controller token create makes one)`);
  }
  const local = o.controller.startsWith('unix:');
  if (!local && !o.token) throw new LxrError('LXR_INVALID_ARGUMENT', `joining ${o.controller} needs a join token: --token (lxr-controller token create makes one)`, { field: 'token' });
  let creds: grpc.ChannelCredentials;
  let pinned: string | null = null;
  if (local) creds = grpc.credentials.createInsecure();
  else {
    const caPem = await pinControllerCa(o.controller, parseJoinToken(o.token!).caHash);
    pinned = caPem;
    creds = grpc.credentials.createSsl(Buffer.from(caPem), null, null, { checkServerIdentity: identityCheck(expectController) });
  }
  const keyPem = newKeyPem();
  const client = new TrustClient(local ? o.controller : `dns:${o.controller}`, creds, { ...CLIENT_OPTIONS, ...tlsNameOptions('lxr-controller') });
  try {
    const res = await unary(client, client.Join, { token: o.token ?? '', name: o.name, csr: await makeCsr(keyPem, { role: 'host', name: o.name }), addresses: o.addresses }, { deadline: Date.now() + 15_000 });
    // Over TCP the CA kept is the one the token pinned, whatever the answer says.
    const ca = pinned ?? res.ca;
    saveIdentity(o.root, ca, res.certificate, keyPem);
    o.log.info({ controller: o.controller, name: o.name, notAfter: res.notAfter }, 'joined: the controller issued this host\'s certificate');
    return new TlsIdentity(ca, res.certificate, keyPem);
  } catch (e) {
    throw fromStatus(e);
  } finally {
    client.close();
  }
}

/** How this host reaches its controller: the root-only unix socket as is, TCP with mutual TLS checked as the controller. */
export function controllerChannel(controller: string, identity: TlsIdentity): { target: string; credentials: grpc.ChannelCredentials; options: grpc.ClientOptions } {
  return controller.startsWith('unix:')
    ? { target: controller, credentials: grpc.credentials.createInsecure(), options: CLIENT_OPTIONS }
    : { target: `dns:${controller}`, credentials: identity.channelCredentials(expectController), options: { ...CLIENT_OPTIONS, ...tlsNameOptions('lxr-controller') } };
}

/**
 * Renews the host's certificate over mutual TLS with the current one, and
 * saves each new one. Each renewal dials afresh: the connection of the last
 * one was made with a certificate that has run out by the next.
 */
export function hostRenewal(identity: TlsIdentity, controller: string, root: string, log: Logger, onRenewed: () => void = () => {}, onExpired: () => void = () => {}): Renewal {
  const local = controller.startsWith('unix:');
  const fetch = async (): Promise<{ certPem: string; keyPem: string }> => {
    const ch = controllerChannel(controller, identity);
    const client = new TrustClient(ch.target, ch.credentials, ch.options);
    try {
      const keyPem = newKeyPem();
      const csr = await makeCsr(keyPem, { role: 'host', name: identity.info.name });
      const res = await unary(client, client.Renew, { csr, ...(local ? { name: identity.info.name } : {}) }, { deadline: Date.now() + 15_000 }).catch((e: unknown) => {
        throw fromStatus(e);
      });
      return { certPem: res.certificate, keyPem };
    } finally {
      client.close();
    }
  };
  return new Renewal(
    identity,
    fetch,
    log,
    (certPem, keyPem) => {
      saveIdentity(root, identity.caPem, certPem, keyPem);
      onRenewed();
    },
    onExpired,
  );
}
