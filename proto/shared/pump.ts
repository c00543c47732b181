// Moving a stream of messages or chunks into another with backpressure:
// the source is paused while the destination is full, so neither side
// buffers without bound (exec relays, uploads).

export interface Sink<T> {
  write(m: T): boolean;
  once(ev: 'drain', f: () => void): unknown;
}

/** Moves every message of `from` into `to` (mapped), pausing `from` while `to` is full. */
export function pump<F, T = F>(from: NodeJS.ReadableStream, to: Sink<T>, map: (m: F) => T = (m) => m as unknown as T): void {
  from.on('data', (m: F) => {
    if (!to.write(map(m))) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
}
