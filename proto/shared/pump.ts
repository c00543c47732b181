// Moving a stream of messages or chunks into another with backpressure:
// the source is paused while the destination is full, so neither side
// buffers without bound (exec relays, uploads).

export interface Sink<T> {
  write(m: T, cb?: () => void): boolean;
  once(ev: 'drain', f: () => void): unknown;
}

/**
 * Moves every message of `from` into `to` (mapped), pausing `from` while `to`
 * is full; `written` is called with each message once `to` wrote it.
 */
export function pump<F, T = F>(from: NodeJS.ReadableStream, to: Sink<T>, map: (m: F) => T = (m) => m as unknown as T, written?: (m: T) => void): void {
  from.on('data', (m: F) => {
    const out = map(m);
    if (!(written ? to.write(out, () => written(out)) : to.write(out))) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
}
