// Asserting on the error catalogue in unit tests: the reason, the message
// and (when given) the field at fault of an LxrError a promise rejects with.
import assert from 'node:assert/strict';
import { LxrError, type Reason } from '../../proto/shared/errors.js';

export async function rejectsWith(p: Promise<unknown>, reason: Reason, pattern: RegExp, field?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    assert.match(e.message, pattern);
    if (field !== undefined) assert.equal(e.field, field, e.message);
    return true;
  });
}

/** The synchronous twin of rejectsWith. */
export function throwsWith(fn: () => unknown, reason: Reason, pattern: RegExp, field?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    assert.match(e.message, pattern);
    if (field !== undefined) assert.equal(e.field, field, e.message);
    return true;
  });
}
