// Image references: Docker's grammar and normalisation, table-driven, with
// docker's own examples (distribution/reference tests) among the cases.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { familiarString, parseReference, referenceString, registryEndpoint, withDefaultTag, type Reference } from '../../agent/image/reference.js';

const H64 = 'f'.repeat(64);
const D256 = `sha256:${'a1'.repeat(32)}`;
const D512 = `sha512:${'f'.repeat(128)}`;

interface Good {
  input: string;
  ref: Reference;
  /** referenceString(withDefaultTag(ref)) */
  canonical: string;
  familiar: string;
}

const good: Good[] = [
  { input: 'golang', ref: { registry: 'docker.io', repository: 'library/golang' }, canonical: 'docker.io/library/golang:latest', familiar: 'golang' },
  { input: 'golang:1.22', ref: { registry: 'docker.io', repository: 'library/golang', tag: '1.22' }, canonical: 'docker.io/library/golang:1.22', familiar: 'golang:1.22' },
  { input: 'user/app', ref: { registry: 'docker.io', repository: 'user/app' }, canonical: 'docker.io/user/app:latest', familiar: 'user/app' },
  { input: 'docker.io/library/golang:latest', ref: { registry: 'docker.io', repository: 'library/golang', tag: 'latest' }, canonical: 'docker.io/library/golang:latest', familiar: 'golang:latest' },
  { input: 'docker.io/golang', ref: { registry: 'docker.io', repository: 'library/golang' }, canonical: 'docker.io/library/golang:latest', familiar: 'golang' },
  { input: 'index.docker.io/user/app', ref: { registry: 'docker.io', repository: 'user/app' }, canonical: 'docker.io/user/app:latest', familiar: 'user/app' },
  { input: 'index.docker.io/ubuntu', ref: { registry: 'docker.io', repository: 'library/ubuntu' }, canonical: 'docker.io/library/ubuntu:latest', familiar: 'ubuntu' },
  { input: 'library/a/b', ref: { registry: 'docker.io', repository: 'library/a/b' }, canonical: 'docker.io/library/a/b:latest', familiar: 'library/a/b' },
  { input: 'localhost/x', ref: { registry: 'localhost', repository: 'x' }, canonical: 'localhost/x:latest', familiar: 'localhost/x' },
  { input: 'localhost:5000/x', ref: { registry: 'localhost:5000', repository: 'x' }, canonical: 'localhost:5000/x:latest', familiar: 'localhost:5000/x' },
  { input: 'registry.example.com:443/a/b:tag', ref: { registry: 'registry.example.com:443', repository: 'a/b', tag: 'tag' }, canonical: 'registry.example.com:443/a/b:tag', familiar: 'registry.example.com:443/a/b:tag' },
  { input: 'ghcr.io/owner/app@' + D256, ref: { registry: 'ghcr.io', repository: 'owner/app', digest: D256 }, canonical: `ghcr.io/owner/app@${D256}`, familiar: `ghcr.io/owner/app@${D256}` },
  { input: `golang:1.22@${D256}`, ref: { registry: 'docker.io', repository: 'library/golang', tag: '1.22', digest: D256 }, canonical: `docker.io/library/golang:1.22@${D256}`, familiar: `golang:1.22@${D256}` },
  // docker's normalize/reference tests
  { input: 'test_com', ref: { registry: 'docker.io', repository: 'library/test_com' }, canonical: 'docker.io/library/test_com:latest', familiar: 'test_com' },
  { input: 'test.com:tag', ref: { registry: 'docker.io', repository: 'library/test.com', tag: 'tag' }, canonical: 'docker.io/library/test.com:tag', familiar: 'test.com:tag' },
  { input: 'test.com:5000', ref: { registry: 'docker.io', repository: 'library/test.com', tag: '5000' }, canonical: 'docker.io/library/test.com:5000', familiar: 'test.com:5000' },
  { input: 'localhost:5000', ref: { registry: 'docker.io', repository: 'library/localhost', tag: '5000' }, canonical: 'docker.io/library/localhost:5000', familiar: 'localhost:5000' },
  { input: 'test.com/repo:tag', ref: { registry: 'test.com', repository: 'repo', tag: 'tag' }, canonical: 'test.com/repo:tag', familiar: 'test.com/repo:tag' },
  { input: 'test:5000/repo', ref: { registry: 'test:5000', repository: 'repo' }, canonical: 'test:5000/repo:latest', familiar: 'test:5000/repo' },
  { input: `test:5000/repo@sha256:${H64}`, ref: { registry: 'test:5000', repository: 'repo', digest: `sha256:${H64}` }, canonical: `test:5000/repo@sha256:${H64}`, familiar: `test:5000/repo@sha256:${H64}` },
  { input: `test:5000/repo:tag@sha256:${H64}`, ref: { registry: 'test:5000', repository: 'repo', tag: 'tag', digest: `sha256:${H64}` }, canonical: `test:5000/repo:tag@sha256:${H64}`, familiar: `test:5000/repo:tag@sha256:${H64}` },
  { input: 'lowercase:Uppercase', ref: { registry: 'docker.io', repository: 'library/lowercase', tag: 'Uppercase' }, canonical: 'docker.io/library/lowercase:Uppercase', familiar: 'lowercase:Uppercase' },
  { input: 'sub-dom1.foo.com/bar/baz/quux', ref: { registry: 'sub-dom1.foo.com', repository: 'bar/baz/quux' }, canonical: 'sub-dom1.foo.com/bar/baz/quux:latest', familiar: 'sub-dom1.foo.com/bar/baz/quux' },
  { input: 'sub-dom1.foo.com/bar/baz/quux:some-long-tag', ref: { registry: 'sub-dom1.foo.com', repository: 'bar/baz/quux', tag: 'some-long-tag' }, canonical: 'sub-dom1.foo.com/bar/baz/quux:some-long-tag', familiar: 'sub-dom1.foo.com/bar/baz/quux:some-long-tag' },
  { input: 'b.gcr.io/test.example.com/my-app:test.example.com', ref: { registry: 'b.gcr.io', repository: 'test.example.com/my-app', tag: 'test.example.com' }, canonical: 'b.gcr.io/test.example.com/my-app:test.example.com', familiar: 'b.gcr.io/test.example.com/my-app:test.example.com' },
  { input: 'xn--n3h.com/myimage:xn--n3h.com', ref: { registry: 'xn--n3h.com', repository: 'myimage', tag: 'xn--n3h.com' }, canonical: 'xn--n3h.com/myimage:xn--n3h.com', familiar: 'xn--n3h.com/myimage:xn--n3h.com' },
  { input: `xn--7o8h.com/myimage:xn--7o8h.com@${D512}`, ref: { registry: 'xn--7o8h.com', repository: 'myimage', tag: 'xn--7o8h.com', digest: D512 }, canonical: `xn--7o8h.com/myimage:xn--7o8h.com@${D512}`, familiar: `xn--7o8h.com/myimage:xn--7o8h.com@${D512}` },
  { input: 'foo_bar.com:8080', ref: { registry: 'docker.io', repository: 'library/foo_bar.com', tag: '8080' }, canonical: 'docker.io/library/foo_bar.com:8080', familiar: 'foo_bar.com:8080' },
  { input: 'foo/foo_bar.com:8080', ref: { registry: 'docker.io', repository: 'foo/foo_bar.com', tag: '8080' }, canonical: 'docker.io/foo/foo_bar.com:8080', familiar: 'foo/foo_bar.com:8080' },
  { input: '192.168.1.1/repo', ref: { registry: '192.168.1.1', repository: 'repo' }, canonical: '192.168.1.1/repo:latest', familiar: '192.168.1.1/repo' },
  { input: '192.168.1.1:5000/repo:v1', ref: { registry: '192.168.1.1:5000', repository: 'repo', tag: 'v1' }, canonical: '192.168.1.1:5000/repo:v1', familiar: '192.168.1.1:5000/repo:v1' },
  { input: '[2001:db8::1]/repo', ref: { registry: '[2001:db8::1]', repository: 'repo' }, canonical: '[2001:db8::1]/repo:latest', familiar: '[2001:db8::1]/repo' },
  { input: '[2001:db8::1]:5000/repo:t', ref: { registry: '[2001:db8::1]:5000', repository: 'repo', tag: 't' }, canonical: '[2001:db8::1]:5000/repo:t', familiar: '[2001:db8::1]:5000/repo:t' },
  { input: 'a/a__b/c.d/e-f/g--h', ref: { registry: 'docker.io', repository: 'a/a__b/c.d/e-f/g--h' }, canonical: 'docker.io/a/a__b/c.d/e-f/g--h:latest', familiar: 'a/a__b/c.d/e-f/g--h' },
  // An uppercase first component cannot be a repository, so docker reads it as a registry.
  { input: 'Foo/bar', ref: { registry: 'Foo', repository: 'bar' }, canonical: 'Foo/bar:latest', familiar: 'Foo/bar' },
  { input: 'a:_tag', ref: { registry: 'docker.io', repository: 'library/a', tag: '_tag' }, canonical: 'docker.io/library/a:_tag', familiar: 'a:_tag' },
  { input: `a:${'t'.repeat(128)}`, ref: { registry: 'docker.io', repository: 'library/a', tag: 't'.repeat(128) }, canonical: `docker.io/library/a:${'t'.repeat(128)}`, familiar: `a:${'t'.repeat(128)}` },
  // docker.io/ (10) + 245 = 255: exactly the limit.
  { input: `a/${'b'.repeat(243)}`, ref: { registry: 'docker.io', repository: `a/${'b'.repeat(243)}` }, canonical: `docker.io/a/${'b'.repeat(243)}:latest`, familiar: `a/${'b'.repeat(243)}` },
];

/** [input, what the message must mention] */
const bad: Array<[string, RegExp]> = [
  ['', /empty/],
  [':justtag', /repository name is empty/],
  [`@sha256:${H64}`, /repository name is empty/],
  ['golang:', /tag after ':' is empty/],
  ['golang@', /digest after '@' is empty/],
  ['Uppercase:tag', /repository name must be lowercase/],
  ['GOLANG', /repository name must be lowercase/],
  ['test:5000/Uppercase/lowercase:tag', /repository name must be lowercase/],
  ['docker.io/User/app', /repository name must be lowercase/],
  ['aa/asdf$$^/aa', /path component "asdf\$\$\^"/],
  ['a//b', /empty path component/],
  ['a/', /empty path component/],
  ['/a', /empty path component/],
  ['-foo', /path component "-foo"/],
  ['foo-', /path component "foo-"/],
  ['foo..bar', /path component "foo\.\.bar"/],
  ['foo___bar', /path component "foo___bar"/],
  ['foo._bar', /path component "foo\._bar"/],
  ['repo:-tag', /tag "-tag" is invalid/],
  ['repo:.tag', /tag "\.tag" is invalid/],
  ['repo:tag:tag2', /tag "tag:tag2" is invalid/],
  ['repo:t@g', /invalid digest/],
  [`a:${'t'.repeat(129)}`, /tag is 129 characters/],
  [H64, /image ID/],
  [`foo@sha256:${'F'.repeat(64)}`, /lowercase/],
  ['foo@sha256:abc', /64 characters/],
  [`foo@md5:${'a'.repeat(32)}`, /unsupported digest algorithm "md5"/],
  [`validname@invaliddigest:${H64}`, /unsupported digest algorithm "invaliddigest"/],
  [`foo@${H64}`, /missing ':'/],
  [`foo@sha256:${H64}@sha256:${H64}`, /invalid digest/],
  ['localhost:abc/foo', /port "abc" must be digits/],
  ['localhost:/foo', /port "" must be digits/],
  ['-bad.com/foo', /registry "-bad\.com" is not a valid host name/],
  ['bad-.com/foo', /registry "bad-\.com"/],
  ['a..com/foo', /registry "a\.\.com"/],
  ['[::1/foo', /IPv6/],
  ['foo bar', /whitespace/],
  ['docker.io/', /repository name is empty/],
  [`a/${'b'.repeat(244)}`, /256 characters .*at most 255/],
  [`${'a'.repeat(256)}`, /at most 255/],
];

describe('parseReference: valid references', () => {
  for (const c of good) {
    it(c.input.length > 60 ? `${c.input.slice(0, 60)}...` : c.input, () => {
      const ref = parseReference(c.input);
      assert.deepEqual(ref, c.ref);
      assert.equal(referenceString(withDefaultTag(ref)), c.canonical);
      assert.equal(familiarString(ref), c.familiar);
      // The canonical and familiar forms parse back to the same reference.
      assert.deepEqual(parseReference(referenceString(ref)), ref);
      assert.deepEqual(parseReference(familiarString(ref)), ref);
    });
  }
});

describe('parseReference: invalid references', () => {
  for (const [input, message] of bad) {
    it(`${JSON.stringify(input.length > 60 ? `${input.slice(0, 60)}...` : input)} fails`, () => {
      assert.throws(
        () => parseReference(input),
        (e: unknown) => {
          assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
          assert.equal(e.reason, 'LXR_INVALID_ARGUMENT');
          assert.equal(e.field, 'image');
          assert.match(e.message, message);
          return true;
        },
      );
    });
  }
});

describe('reference helpers', () => {
  it('withDefaultTag adds latest only when neither tag nor digest is set', () => {
    assert.equal(withDefaultTag(parseReference('golang')).tag, 'latest');
    assert.equal(withDefaultTag(parseReference('golang:1')).tag, '1');
    const pinned = withDefaultTag(parseReference(`golang@${D256}`));
    assert.equal(pinned.tag, undefined);
    assert.equal(pinned.digest, D256);
  });

  it('withDefaultTag does not mutate its argument', () => {
    const ref = parseReference('golang');
    withDefaultTag(ref);
    assert.equal(ref.tag, undefined);
  });

  it('registryEndpoint maps Docker Hub names to its API host', () => {
    assert.equal(registryEndpoint('docker.io'), 'registry-1.docker.io');
    assert.equal(registryEndpoint('index.docker.io'), 'registry-1.docker.io');
    assert.equal(registryEndpoint(parseReference('golang').registry), 'registry-1.docker.io');
    assert.equal(registryEndpoint('ghcr.io'), 'ghcr.io');
    assert.equal(registryEndpoint('localhost:5000'), 'localhost:5000');
    assert.equal(registryEndpoint('[::1]:5000'), '[::1]:5000');
  });

  it('familiarString keeps other registries and multi-component library names', () => {
    assert.equal(familiarString({ registry: 'docker.io', repository: 'library/golang', tag: 'latest' }), 'golang:latest');
    assert.equal(familiarString({ registry: 'quay.io', repository: 'library/golang' }), 'quay.io/library/golang');
    assert.equal(familiarString({ registry: 'docker.io', repository: 'library/a/b' }), 'library/a/b');
  });
});
