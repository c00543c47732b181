// The /metrics endpoint (proto/shared/metrics-http.ts) on a real HTTP server
// bound to port 0: the text format as the spec spells it, whatever
// prom-client writes (it writes not-a-number as "Nan").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gauge, Registry } from 'prom-client';
import { serveMetrics } from '../../proto/shared/metrics-http.js';

test('a NaN sample is served as NaN, other samples and labels as they are', async () => {
  const registry = new Registry();
  const g = new Gauge({ name: 'lxr_test_value', help: 'a test gauge', labelNames: ['which'], registers: [registry] });
  g.set({ which: 'nan' }, NaN);
  g.set({ which: 'Nan label' }, 2.5);
  const srv = await serveMetrics(registry, '127.0.0.1:0');
  try {
    const body = await (await fetch(`http://${srv.address}/metrics`)).text();
    const lines = body.split('\n').filter((l) => l.startsWith('lxr_test_value'));
    assert.deepEqual(lines.sort(), ['lxr_test_value{which="Nan label"} 2.5', 'lxr_test_value{which="nan"} NaN']);
  } finally {
    await srv.close();
  }
});
