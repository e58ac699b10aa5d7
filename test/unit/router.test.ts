import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ALLOWED_METHODS, matchV2Path, type V2Route } from '../../src/registry/router.ts';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const UPLOAD_ID = '0b0e1f5e-0c55-4d5c-9a57-3e8b5a3c1a2b';

describe('matchV2Path', () => {
  const cases: Array<[string, V2Route | undefined]> = [
    ['', { kind: 'base' }],
    ['_catalog', { kind: 'catalog' }],
    ['app/tags/list', { kind: 'tags', name: 'app' }],
    ['a/b/c/tags/list', { kind: 'tags', name: 'a/b/c' }],
    ['app/manifests/latest', { kind: 'manifest', name: 'app', reference: 'latest' }],
    [`org/team/app/manifests/${DIGEST}`, { kind: 'manifest', name: 'org/team/app', reference: DIGEST }],
    [`app/blobs/${DIGEST}`, { kind: 'blob', name: 'app', digest: DIGEST }],
    [`a/b/blobs/${DIGEST}`, { kind: 'blob', name: 'a/b', digest: DIGEST }],
    [`app/referrers/${DIGEST}`, { kind: 'referrers', name: 'app', digest: DIGEST }],
    // Uploads, with and without the trailing slash.
    ['app/blobs/uploads/', { kind: 'uploads', name: 'app' }],
    ['app/blobs/uploads', { kind: 'uploads', name: 'app' }],
    ['a/b/blobs/uploads/', { kind: 'uploads', name: 'a/b' }],
    [`app/blobs/uploads/${UPLOAD_ID}`, { kind: 'upload', name: 'app', id: UPLOAD_ID }],
    [`a/b/c/blobs/uploads/${UPLOAD_ID}`, { kind: 'upload', name: 'a/b/c', id: UPLOAD_ID }],
    // Names whose components are themselves route words.
    ['blobs/manifests/latest', { kind: 'manifest', name: 'blobs', reference: 'latest' }],
    ['manifests/manifests/latest', { kind: 'manifest', name: 'manifests', reference: 'latest' }],
    ['a/blobs/b/manifests/v1', { kind: 'manifest', name: 'a/blobs/b', reference: 'v1' }],
    ['tags/manifests/list', { kind: 'manifest', name: 'tags', reference: 'list' }],
    ['tags/tags/list', { kind: 'tags', name: 'tags' }],
    ['x/manifests/tags/list', { kind: 'tags', name: 'x/manifests' }],
    [`blobs/blobs/${DIGEST}`, { kind: 'blob', name: 'blobs', digest: DIGEST }],
    [`x/manifests/blobs/${DIGEST}`, { kind: 'blob', name: 'x/manifests', digest: DIGEST }],
    ['blobs/blobs/uploads/', { kind: 'uploads', name: 'blobs' }],
    ['x/blobs/uploads/blobs/uploads/', { kind: 'uploads', name: 'x/blobs/uploads' }],
    [`uploads/blobs/uploads/${UPLOAD_ID}`, { kind: 'upload', name: 'uploads', id: UPLOAD_ID }],
    ['x/blobs/uploads/manifests/uploads', { kind: 'manifest', name: 'x/blobs/uploads', reference: 'uploads' }],
    // A tag named like a route word is still a tag.
    ['app/manifests/blobs', { kind: 'manifest', name: 'app', reference: 'blobs' }],
    // Percent-encoded segments are decoded.
    [`app/blobs/${encodeURIComponent(DIGEST)}`, { kind: 'blob', name: 'app', digest: DIGEST }],
    [`app/manifests/${encodeURIComponent(DIGEST)}`, { kind: 'manifest', name: 'app', reference: DIGEST }],
    [`app/referrers/sha256%3a${'ab'.repeat(32)}`, { kind: 'referrers', name: 'app', digest: DIGEST }],
    // Not routes.
    ['manifests/latest', undefined],
    ['app/manifests/', undefined],
    ['app/blobs/', undefined],
    ['app/referrers/', undefined],
    ['app/tags', undefined],
    ['app/tags/list/', undefined],
    ['app', undefined],
    ['app/other/thing', undefined],
    ['_catalog/', undefined],
    // Invalid percent-encoding is no route, not an exception.
    ['app/manifests/%zz', undefined],
    ['app%/manifests/latest', undefined],
    [`app/blobs/sha256%3z${'a'.repeat(64)}`, undefined],
    ['app/blobs/uploads/%E0%A4%A', undefined],
  ];
  for (const [path, expected] of cases) {
    it(`${JSON.stringify(path)} → ${expected ? expected.kind : 'no route'}`, () => {
      assert.deepEqual(matchV2Path(path), expected);
    });
  }

  it('every route kind has an allowed-methods entry', () => {
    const kinds: Array<V2Route['kind']> = ['base', 'catalog', 'tags', 'manifest', 'blob', 'uploads', 'upload', 'referrers'];
    assert.deepEqual(Object.keys(ALLOWED_METHODS).sort(), [...kinds].sort());
    assert.deepEqual([...ALLOWED_METHODS.uploads], ['POST']);
    assert.ok(ALLOWED_METHODS.manifest.includes('PUT') && ALLOWED_METHODS.manifest.includes('DELETE'));
    assert.ok(!ALLOWED_METHODS.blob.includes('PUT'));
  });
});
