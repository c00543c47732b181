// Logging setup shared by every LXR component: one pino root logger per
// process; child loggers carry {host, container, rpc}.
import pino, { type Logger } from 'pino';

export type { Logger };

export interface LogContext {
  host?: string;
  container?: string;
  rpc?: string;
}

export function rootLogger(component: string, level = process.env.LXR_LOG_LEVEL ?? 'info'): Logger {
  // Logs go to stderr: stdout belongs to command output (lxr-runtime state, lxrctl ps).
  return pino({ name: component, level, base: { component } }, pino.destination(2));
}

export function childLogger(parent: Logger, ctx: LogContext): Logger {
  return parent.child(ctx);
}
