// The error catalogue at the gRPC boundary: every reason's status code and
// trailers, INTERNAL for foreign errors, and the client-side round trip.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Code, invalidArgument, LxrError, Reasons, type Reason } from '../../proto/shared/errors.js';
import { FIELD_KEY, fromStatus, REASON_KEY, toStatus } from '../../proto/shared/grpc-errors.js';

test('every reason maps to its catalogue code and travels as lxr-reason', () => {
  const table: Array<[Reason, number]> = [
    ['LXR_INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT],
    ['LXR_INVALID_SPEC', grpc.status.INVALID_ARGUMENT],
    ['LXR_NOT_FOUND', grpc.status.NOT_FOUND],
    ['LXR_ALREADY_EXISTS', grpc.status.ALREADY_EXISTS],
    ['LXR_ILLEGAL_STATE', grpc.status.FAILED_PRECONDITION],
    ['LXR_PERMISSION_DENIED', grpc.status.PERMISSION_DENIED],
    ['LXR_EXEC_NOT_FOUND', grpc.status.NOT_FOUND],
    ['LXR_EXEC_NOT_EXECUTABLE', grpc.status.PERMISSION_DENIED],
    ['LXR_RESOURCE_EXHAUSTED', grpc.status.RESOURCE_EXHAUSTED],
    ['LXR_SUBNET_EXHAUSTED', grpc.status.RESOURCE_EXHAUSTED],
    ['LXR_IP_EXHAUSTED', grpc.status.RESOURCE_EXHAUSTED],
    ['LXR_UNSUPPORTED', grpc.status.UNIMPLEMENTED],
    ['LXR_CONFLICT', grpc.status.ABORTED],
    ['LXR_NO_HOST_FITS', grpc.status.RESOURCE_EXHAUSTED],
    ['LXR_HOST_UNSCHEDULABLE', grpc.status.FAILED_PRECONDITION],
    ['LXR_UNAVAILABLE', grpc.status.UNAVAILABLE],
    ['LXR_UNAUTHENTICATED', grpc.status.UNAUTHENTICATED],
    ['LXR_HOST_SETUP_FAILED', grpc.status.INTERNAL],
    ['LXR_CLEANUP_FAILED', grpc.status.INTERNAL],
    ['LXR_INTERNAL', grpc.status.INTERNAL],
  ];
  assert.deepEqual(table.map(([r]) => r).sort(), Object.keys(Reasons).sort(), 'the table covers the catalogue');
  for (const [reason, code] of table) {
    const st = toStatus(new LxrError(reason, `boom ${reason}`));
    assert.equal(st.code, code, reason);
    assert.equal(st.details, `boom ${reason}`);
    assert.deepEqual(st.metadata.get(REASON_KEY), [reason]);
    assert.deepEqual(st.metadata.get(FIELD_KEY), [], 'no field, no lxr-field');
  }
});

test('the field at fault travels as lxr-field', () => {
  const st = toStatus(invalidArgument('name', 'bad'));
  assert.equal(st.code, grpc.status.INVALID_ARGUMENT);
  assert.deepEqual(st.metadata.get(FIELD_KEY), ['name']);
  assert.match(st.details, /name: bad/);
});

test('anything else is INTERNAL with its message kept', () => {
  for (const e of [new Error('disk on fire'), Object.assign(new Error('nope'), { code: 'EACCES' }), 'a string']) {
    const st = toStatus(e);
    assert.equal(st.code, grpc.status.INTERNAL);
    assert.deepEqual(st.metadata.get(REASON_KEY), ['LXR_INTERNAL']);
    assert.equal(st.details, e instanceof Error ? e.message : String(e));
  }
});

test('fromStatus turns a status back into the LxrError', () => {
  const orig = new LxrError('LXR_ILLEGAL_STATE', 'cannot start container "a": it is running', { field: 'name' });
  const back = fromStatus(toStatus(orig));
  assert.ok(back instanceof LxrError);
  assert.equal(back.reason, 'LXR_ILLEGAL_STATE');
  assert.equal(back.code, Code.FAILED_PRECONDITION);
  assert.equal(back.message, orig.message);
  assert.equal(back.field, 'name');
});

test('fromStatus without (or with a contradicting) lxr-reason falls back on the code', () => {
  const status = (code: number, reason?: string) => {
    const metadata = new grpc.Metadata();
    if (reason) metadata.set(REASON_KEY, reason);
    return Object.assign(new Error('x'), { code, details: 'details', metadata });
  };
  assert.equal(fromStatus(status(grpc.status.UNAVAILABLE)).reason, 'LXR_UNAVAILABLE');
  assert.equal(fromStatus(status(grpc.status.NOT_FOUND)).reason, 'LXR_NOT_FOUND');
  assert.equal(fromStatus(status(grpc.status.DATA_LOSS)).reason, 'LXR_INTERNAL');
  assert.equal(fromStatus(status(grpc.status.NOT_FOUND, 'LXR_ALREADY_EXISTS')).reason, 'LXR_NOT_FOUND');
  assert.equal(fromStatus(status(grpc.status.NOT_FOUND, 'LXR_MADE_UP')).reason, 'LXR_NOT_FOUND');
  assert.equal(fromStatus(status(grpc.status.NOT_FOUND, 'LXR_EXEC_NOT_FOUND')).reason, 'LXR_EXEC_NOT_FOUND');
  assert.equal(fromStatus(status(grpc.status.NOT_FOUND)).message, 'details');
  assert.equal(fromStatus(new Error('plain')).reason, 'LXR_INTERNAL');
});
