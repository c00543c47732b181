// The benchmarks' statistics helpers: percentiles, medians and the wording
// of speed ratios.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatTable, median, percentile, round, speedRatio, splitEvenly, summarize } from '../bench/stats.js';

describe('bench stats', () => {
  it('median of odd and even counts, unsorted input left alone', () => {
    const xs = [5, 1, 3];
    assert.equal(median(xs), 3);
    assert.deepEqual(xs, [5, 1, 3]);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([7]), 7);
    assert.ok(Number.isNaN(median([])));
  });

  it('p90 by nearest rank', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 1..100 shuffled order
    assert.equal(percentile(xs, 90), 90);
    assert.equal(percentile(xs, 100), 100);
    assert.equal(percentile([1, 2, 3], 90), 3);
    assert.equal(percentile([9], 90), 9);
    assert.equal(percentile(Array.from({ length: 10 }, (_, i) => i + 1), 90), 9);
    assert.throws(() => percentile([1], 0), RangeError);
    assert.ok(Number.isNaN(percentile([], 50)));
  });

  it('summarize gives median, p90, min and n', () => {
    assert.deepEqual(summarize([3, 1, 2, 10]), { median: 2.5, p90: 10, min: 1, n: 4 });
    const empty = summarize([]);
    assert.equal(empty.n, 0);
    assert.ok(Number.isNaN(empty.median) && Number.isNaN(empty.min));
  });

  it('speedRatio says which side is faster', () => {
    const faster = speedRatio('lxr', 8, 'crun', 10);
    assert.equal(faster.ratio, 1.25);
    assert.equal(faster.text, 'crun/lxr = 1.25 → lxr is 1.25x faster');
    const slower = speedRatio('lxr', 20, 'runc', 10);
    assert.equal(slower.ratio, 0.5);
    assert.equal(slower.text, 'runc/lxr = 0.50 → lxr is 2.00x slower');
    assert.match(speedRatio('a', 0, 'b', 0).text, /no comparison/);
  });

  it('round and splitEvenly', () => {
    assert.equal(round(1.23456), 1.235);
    assert.equal(round(1.5, 0), 2);
    assert.deepEqual(splitEvenly(100, 10), Array(10).fill(10));
    assert.deepEqual(splitEvenly(7, 3), [3, 2, 2]);
    assert.deepEqual(splitEvenly(2, 4), [1, 1, 0, 0]);
    assert.equal(splitEvenly(23, 10).reduce((a, b) => a + b, 0), 23);
  });

  it('formatTable aligns columns', () => {
    const t = formatTable(['name', 'ms'], [['a', '1.00'], ['longer', '10.00']]);
    assert.equal(t, ['name       ms', '------  -----', 'a        1.00', 'longer  10.00'].join('\n'));
  });
});
