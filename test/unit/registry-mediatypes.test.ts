// Media types and manifest parsing: which documents are indexes, manifests
// or schema 1, how layers are compressed, and what is refused.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { parseManifest } from '../../agent/image/registry/manifest.js';
import { isImageConfig, layerCompression, layerType, MANIFEST_ACCEPT, manifestKind, MediaType } from '../../agent/image/registry/mediatypes.js';

const layerCases: Array<[string, 'none' | 'gzip' | 'zstd' | 'foreign' | 'unknown']> = [
  ['application/vnd.oci.image.layer.v1.tar', 'none'],
  ['application/vnd.oci.image.layer.v1.tar+gzip', 'gzip'],
  ['application/vnd.oci.image.layer.v1.tar+zstd', 'zstd'],
  ['application/vnd.docker.image.rootfs.diff.tar', 'none'],
  ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'gzip'],
  ['application/vnd.docker.image.rootfs.diff.tar.zstd', 'zstd'],
  ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'foreign'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'foreign'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar', 'foreign'],
  ['application/vnd.oci.image.layer.v1.tar+bzip2', 'unknown'],
  ['application/vnd.cncf.helm.chart.content.v1.tar+gzip', 'unknown'],
  ['', 'unknown'],
];

describe('layerCompression', () => {
  for (const [mt, want] of layerCases) {
    it(`${mt || '(empty)'} -> ${want}`, () => {
      if (want === 'foreign') {
        assert.equal(layerType(mt)?.foreign, true);
        assert.throws(() => layerCompression(mt), (e: LxrError) => e.reason === 'LXR_UNSUPPORTED' && /foreign/.test(e.message));
      } else if (want === 'unknown') {
        assert.equal(layerType(mt), undefined);
        assert.throws(() => layerCompression(mt), (e: LxrError) => e.reason === 'LXR_UNSUPPORTED' && /unsupported layer media type/.test(e.message));
      } else {
        assert.equal(layerCompression(mt), want);
      }
    });
  }
});

describe('manifest media types', () => {
  it('classifies manifest types and accepts exactly the four schema 2 / OCI ones', () => {
    assert.equal(manifestKind(MediaType.OciIndex), 'index');
    assert.equal(manifestKind(MediaType.DockerManifestList), 'index');
    assert.equal(manifestKind(MediaType.OciManifest), 'manifest');
    assert.equal(manifestKind(MediaType.DockerManifest), 'manifest');
    assert.equal(manifestKind(MediaType.DockerManifestV1Signed), 'schema1');
    assert.equal(manifestKind('application/json'), undefined);
    assert.equal(manifestKind(undefined), undefined);
    assert.deepEqual([...MANIFEST_ACCEPT].sort(), [MediaType.DockerManifest, MediaType.DockerManifestList, MediaType.OciIndex, MediaType.OciManifest].sort());
    assert.ok(isImageConfig(MediaType.OciConfig) && isImageConfig(MediaType.DockerConfig) && !isImageConfig('application/vnd.oci.empty.v1+json'));
  });
});

const D = `sha256:${'a'.repeat(64)}`;
const desc = (mediaType: string) => ({ mediaType, digest: D, size: 10 });
const manifest = (over: Record<string, unknown> = {}) => ({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: desc(MediaType.OciConfig), layers: [desc(MediaType.OciLayerGzip)], ...over });
const j = (o: unknown): Buffer => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o));

describe('parseManifest', () => {
  const ok: Array<[string, unknown, string | undefined, string, string]> = [
    ['OCI manifest', manifest(), MediaType.OciManifest, 'manifest', MediaType.OciManifest],
    ['Docker manifest by content type', manifest({ mediaType: undefined, config: desc(MediaType.DockerConfig) }), MediaType.DockerManifest, 'manifest', MediaType.DockerManifest],
    ['OCI manifest without mediaType or content type', manifest({ mediaType: undefined }), 'application/octet-stream', 'manifest', MediaType.OciManifest],
    ['OCI index', { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [desc(MediaType.OciManifest)] }, MediaType.OciIndex, 'index', MediaType.OciIndex],
    ['index by shape', { schemaVersion: 2, manifests: [] }, undefined, 'index', MediaType.OciIndex],
    ['manifest list, content type with parameters', { schemaVersion: 2, manifests: [] }, `${MediaType.DockerManifestList}; charset=utf-8`, 'index', MediaType.DockerManifestList],
  ];
  for (const [name, doc, ct, kind, mt] of ok) {
    it(`accepts ${name}`, () => {
      const r = parseManifest(j(doc), ct, 'm');
      assert.equal(r.kind, kind);
      assert.equal(r.mediaType, mt);
    });
  }

  const bad: Array<[string, unknown, string | undefined, string, RegExp]> = [
    ['schema 1 by content type', { schemaVersion: 1, name: 'x' }, MediaType.DockerManifestV1Signed, 'LXR_UNSUPPORTED', /schema 1/],
    ['schema 1 by version', { schemaVersion: 1, fsLayers: [] }, 'application/json', 'LXR_UNSUPPORTED', /schema 1/],
    ['not JSON', '{', MediaType.OciManifest, 'LXR_INVALID_ARGUMENT', /not valid JSON/],
    ['an array', [], MediaType.OciManifest, 'LXR_INVALID_ARGUMENT', /not a JSON object/],
    ['schemaVersion 3', manifest({ schemaVersion: 3 }), MediaType.OciManifest, 'LXR_INVALID_ARGUMENT', /schemaVersion/],
    ['bad layer digest', manifest({ layers: [{ ...desc(MediaType.OciLayer), digest: 'sha256:xyz' }] }), undefined, 'LXR_INVALID_ARGUMENT', /layers\[0\]\.digest/],
    ['negative size', manifest({ config: { ...desc(MediaType.OciConfig), size: -1 } }), undefined, 'LXR_INVALID_ARGUMENT', /config\.size/],
    ['no layers', manifest({ layers: undefined }), undefined, 'LXR_INVALID_ARGUMENT', /layers/],
    ['artifact config', manifest({ config: desc('application/vnd.cncf.helm.config.v1+json') }), undefined, 'LXR_UNSUPPORTED', /not a container image/],
    ['foreign layer', manifest({ layers: [desc(MediaType.DockerLayerForeign)] }), undefined, 'LXR_UNSUPPORTED', /layers\[0\].*foreign/],
    ['index without manifests', { schemaVersion: 2, mediaType: MediaType.OciIndex }, undefined, 'LXR_INVALID_ARGUMENT', /manifests/],
    ['unknown shape', { schemaVersion: 2 }, 'text/plain', 'LXR_INVALID_ARGUMENT', /not a manifest type/],
    ['other media type', { schemaVersion: 2, mediaType: 'application/vnd.example+json' }, undefined, 'LXR_UNSUPPORTED', /not an image index or manifest/],
  ];
  for (const [name, doc, ct, reason, re] of bad) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => parseManifest(j(doc), ct, 'manifest x'),
        (e: LxrError) => e.reason === reason && re.test(e.message),
      );
    });
  }
});
