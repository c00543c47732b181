// walkFlags: `--flag value` and `--flag=value`, values taken only when
// asked, and a missing value named by its flag.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { walkFlags } from '../../proto/shared/flags.js';

describe('walkFlags', () => {
  it('reads separate and inline values, and bare switches', () => {
    const seen: Array<[string, string | null]> = [];
    walkFlags(['--a', '1', '--b=2', '-o', 'json', '--on', 'pos'], (flag, value) => seen.push([flag, flag === '--on' || flag === 'pos' ? null : value()]));
    assert.deepEqual(seen, [['--a', '1'], ['--b', '2'], ['-o', 'json'], ['--on', null], ['pos', null]]);
  });

  it('a missing or empty value is an error naming the flag, made by the caller', () => {
    class Usage extends Error {}
    assert.throws(() => walkFlags(['--x'], (_f, v) => v(), (m) => new Usage(m)), (e: Error) => e instanceof Usage && e.message === '--x needs a value');
    assert.throws(() => walkFlags(['--x='], (_f, v) => v()), /--x needs a value/);
  });
});
