// Signed links to a workspace's pages. `lxrctl open NAME` gets a link that
// is good for a few minutes; opening it sets a cookie, scoped to that
// workspace's path, that is good for hours. Both are HMAC-SHA256 over the
// purpose, the workspace and the expiry, with a key the controller keeps in
// <root>/pki/web-link.key (0600), so links survive a restart.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type LinkPurpose = 'link' | 'cookie';

export class WebLinks {
  private constructor(private readonly key: Buffer) {}

  static open(dir: string): WebLinks {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, 'web-link.key');
    if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
    return new WebLinks(Buffer.from(readFileSync(file, 'utf8').trim(), 'hex'));
  }

  /** For tests: a key of one's own. */
  static withKey(key: Buffer): WebLinks {
    return new WebLinks(key);
  }

  private mac(purpose: LinkPurpose, workspace: string, expires: number): string {
    return createHmac('sha256', this.key).update(`${purpose}\n${workspace}\n${expires}`).digest('base64url');
  }

  /** EXPIRY.MAC, EXPIRY in seconds since the epoch. */
  sign(purpose: LinkPurpose, workspace: string, ttlSeconds: number, now = Date.now()): string {
    const expires = Math.floor(now / 1000) + ttlSeconds;
    return `${expires}.${this.mac(purpose, workspace, expires)}`;
  }

  /** Null when good; else why not (for the log and the refusal). */
  check(token: string | undefined, purpose: LinkPurpose, workspace: string, now = Date.now()): string | null {
    const m = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token ?? '');
    if (!m) return token ? 'the link is malformed' : 'no link or credential came';
    const expires = Number(m[1]);
    const want = Buffer.from(this.mac(purpose, workspace, expires));
    const got = Buffer.from(m[2]!);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return `the link is not for workspace ${workspace} (or was altered)`;
    if (expires * 1000 < now) return `the link expired at ${new Date(expires * 1000).toISOString()}: lxrctl open ${workspace} makes a new one`;
    return null;
  }
}
