// Certificates are renewed before they expire, by whoever holds them: at two
// thirds of the lifetime a new key and certificate are fetched and the
// TlsIdentity switches to them. Connections already open keep the old ones
// (an attached exec session is not dropped); new ones use the new. A failed
// renewal is tried again soon, until the certificate runs out; then the
// holder is told (an agent then stops: it must join again).
import type { Logger } from './log.js';
import type { TlsIdentity } from './tls.js';

export type Fetch = () => Promise<{ certPem: string; keyPem: string }>;

const RETRY_MS = 5_000;
/** setTimeout's limit (about 24.8 days): longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * When a certificate that runs out at `notAfter` is renewed, seen at `now`:
 * after two thirds of what is left (at once if little is), so a new
 * certificate is renewed at two thirds of its life, and one loaded after a
 * restart well before it runs out. (Not from notBefore: certificates are
 * back-dated a minute for clock skew.)
 */
export function renewAt(notAfter: Date, now = new Date()): Date {
  return new Date(now.getTime() + Math.max(1000, ((notAfter.getTime() - now.getTime()) * 2) / 3));
}

export class Renewal {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Renewals done, for logs and tests. */
  count = 0;

  constructor(
    private readonly identity: TlsIdentity,
    private readonly fetch: Fetch,
    private readonly log: Logger,
    private readonly onRenewed: (certPem: string, keyPem: string) => void = () => {},
    /** The certificate ran out before a renewal succeeded: nothing accepts it any more. */
    private readonly onExpired: () => void = () => {},
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule(renewAt(this.identity.info.notAfter).getTime() - Date.now());
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    const wait = Math.max(0, ms);
    this.timer = setTimeout(() => (wait > MAX_TIMER_MS ? this.schedule(wait - MAX_TIMER_MS) : void this.renew()), Math.min(wait, MAX_TIMER_MS));
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    try {
      const { certPem, keyPem } = await this.fetch();
      if (this.stopped) return;
      this.identity.update(certPem, keyPem);
      this.onRenewed(certPem, keyPem);
      this.count++;
      const info = this.identity.info;
      this.log.info({ role: info.role, name: info.name, serial: info.serial, notAfter: info.notAfter.toISOString() }, 'certificate renewed');
      this.start();
    } catch (e) {
      const left = this.identity.info.notAfter.getTime() - Date.now();
      if (left <= 0) {
        this.log.error({ err: e, expired: this.identity.info.notAfter.toISOString() }, 'the certificate expired before it could be renewed');
        this.stop();
        this.onExpired();
        return;
      }
      this.log.warn({ err: e, expiresInMs: left }, 'renewing the certificate failed; trying again');
      this.schedule(Math.min(RETRY_MS, Math.max(1000, left / 10)));
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
