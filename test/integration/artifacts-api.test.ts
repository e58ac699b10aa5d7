/**
 * Harbor's artifact and tag API (/api/v2.0/projects/{p}/repositories/{r}/artifacts…) over a real
 * socket with authentication on, on every database backend: the Artifact shape (type, sizes,
 * index references, tags, accessories), listing rules (index children and accessories hidden
 * unless q=base=*), q filters, paging headers, tag create/delete, artifact delete with its
 * dependents (seen through /v2), double-encoded repository names, permissions per role, and
 * bad input answered with Harbor's error shape, never a 500.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AccessControl } from '../../src/iam/access.ts';
import { FilesystemBlobStore } from '../../src/platform/storage/filesystem.ts';
import { RegistryApiStore } from '../../src/registry/api-store.ts';
import { ArtifactService } from '../../src/registry/artifacts.ts';
import { ManifestService } from '../../src/registry/manifests.ts';
import { RegistryStore } from '../../src/registry/store.ts';
import { BACKENDS } from '../helpers/backends.ts';
import {
  ADMIN,
  addMember,
  api,
  apiJson,
  assertApiError,
  createProject,
  createUser,
  links,
  type Pushed,
  pushImage,
  pushIndex,
  startAuthServer,
  v2ManifestStatus,
} from '../helpers/harbor-api.ts';
import { assertNoServerErrors } from '../helpers/http.ts';
import { OCI_CONFIG, OCI_INDEX, OCI_MANIFEST } from '../helpers/oci.ts';
import type { TestServer } from '../helpers/server.ts';
import type { ArtifactJson, TagJson } from '../../src/registry/artifact-model.ts';


const NOTATION = 'application/vnd.cncf.notary.signature';
const ZERO_TIME = '0001-01-01T00:00:00.000Z';
const APP = '/projects/library/repositories/app';

for (const backend of BACKENDS) {
  describe(`artifact API (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let a: Pushed;
    let b: Pushed;
    let amd: Pushed;
    let arm: Pushed;
    let index: Pushed;
    let signature: Pushed;
    let nested: Pushed;

    before(async () => {
      server = await startAuthServer(backend);
      base = server.url;
      a = await pushImage(base, 'library/app', { tags: ['v1', 'v1-alias'], layers: 2, annotations: { 'org.opencontainers.image.version': '1' } });
      b = await pushImage(base, 'library/app', { tags: ['v2'] });
      amd = await pushImage(base, 'library/app', { architecture: 'amd64' });
      arm = await pushImage(base, 'library/app', { architecture: 'arm64' });
      index = await pushIndex(
        base,
        'library/app',
        [
          { image: amd, architecture: 'amd64' },
          { image: arm, architecture: 'arm64' },
        ],
        ['multi'],
      );
      signature = await pushImage(base, 'library/app', { artifactType: NOTATION, configMediaType: 'application/vnd.oci.empty.v1+json', subject: a });
      nested = await pushImage(base, 'library/a/b', { tags: ['latest'] });
    });
    after(async () => {
      assertNoServerErrors(server);
      await server.close();
    });

    it('lists tagged artifacts and those no index references, newest first, with Harbor paging headers', async () => {
      const { body, res } = await apiJson<ArtifactJson[]>(base, `${APP}/artifacts`, 200, { auth: ADMIN });
      assert.deepEqual(body.map((x) => x.digest).sort(), [a.digest, b.digest, index.digest].sort());
      assert.equal(res.headers.get('x-total-count'), '3');
      const times = body.map((x) => Date.parse(x.push_time));
      assert.deepEqual(times, [...times].sort((x, y) => y - x), 'newest first');
      assert.deepEqual(links(res), {});

      const page1 = await apiJson<ArtifactJson[]>(base, `${APP}/artifacts?page_size=2`, 200, { auth: ADMIN });
      assert.equal(page1.body.length, 2);
      assert.equal(page1.res.headers.get('x-total-count'), '3');
      const next = links(page1.res).next;
      assert.ok(next, 'a next link');
      assert.match(next, /page=2/);
      const page2 = await apiJson<ArtifactJson[]>(base, next.replace('/api/v2.0', ''), 200, { auth: ADMIN });
      assert.equal(page2.body.length, 1);
      assert.ok(links(page2.res).prev);
      assert.equal(links(page2.res).next, undefined);
      assert.deepEqual([...page1.body, ...page2.body].map((x) => x.digest), body.map((x) => x.digest));
    });

    it('shows an image in Harbor’s Artifact shape', async () => {
      const { body } = await apiJson<ArtifactJson>(base, `${APP}/artifacts/v1`, 200, { auth: ADMIN });
      assert.equal(body.type, 'IMAGE');
      assert.equal(body.media_type, OCI_CONFIG);
      assert.equal(body.manifest_media_type, OCI_MANIFEST);
      assert.equal(body.artifact_type, OCI_CONFIG);
      assert.equal(body.digest, a.digest);
      assert.equal(body.size, a.size);
      assert.equal(body.repository_name, 'library/app');
      assert.equal(body.project_id, 1);
      assert.equal(typeof body.repository_id, 'number');
      assert.ok(Number.isSafeInteger(body.id) && body.id > 0);
      assert.ok(!Number.isNaN(Date.parse(body.push_time)));
      assert.equal(body.pull_time, ZERO_TIME);
      assert.deepEqual(body.annotations, { 'org.opencontainers.image.version': '1' });
      assert.deepEqual(body.references, []);
      assert.deepEqual(body.labels, []);
      assert.deepEqual(body.accessories, []);
      assert.equal(typeof body.extra_attrs, 'object');
      assert.deepEqual(body.tags.map((t) => t.name).sort(), ['v1', 'v1-alias']);
      for (const tag of body.tags) {
        assert.equal(tag.artifact_id, body.id);
        assert.equal(tag.repository_id, body.repository_id);
        assert.equal(tag.immutable, false);
        assert.equal(tag.pull_time, ZERO_TIME);
        assert.ok(Number.isSafeInteger(tag.id));
      }
      // The same artifact by digest; ids are stable.
      const byDigest = await apiJson<ArtifactJson>(base, `${APP}/artifacts/${a.digest}`, 200, { auth: ADMIN });
      assert.deepEqual(byDigest.body, body);
    });

    it('shows an index with its children as references and their sizes summed', async () => {
      const { body } = await apiJson<ArtifactJson>(base, `${APP}/artifacts/multi`, 200, { auth: ADMIN });
      assert.equal(body.type, 'IMAGE');
      assert.equal(body.media_type, OCI_INDEX);
      assert.equal(body.manifest_media_type, OCI_INDEX);
      assert.equal(body.size, index.size);
      assert.deepEqual(body.annotations, { 'org.opencontainers.image.title': 'multi' });
      assert.deepEqual(
        body.references.map((r) => [r.child_digest, r.platform?.architecture, r.platform?.os, r.parent_id]),
        [
          [amd.digest, 'amd64', 'linux', body.id],
          [arm.digest, 'arm64', 'linux', body.id],
        ],
      );
      const child = await apiJson<ArtifactJson>(base, `${APP}/artifacts/${amd.digest}`, 200, { auth: ADMIN });
      assert.equal(body.references[0]?.child_id, child.body.id);
      assert.deepEqual(child.body.tags, []);
    });

    it('q=base=* lists index children and accessories too; q filters by tags, digest and media type', async () => {
      const all = await apiJson<ArtifactJson[]>(base, `${APP}/artifacts?q=${encodeURIComponent('base=*')}&page_size=100`, 200, { auth: ADMIN });
      assert.equal(all.res.headers.get('x-total-count'), '6');
      assert.deepEqual(all.body.map((x) => x.digest).sort(), [a, b, amd, arm, index, signature].map((x) => x.digest).sort());

      const q = async (query: string) => (await apiJson<ArtifactJson[]>(base, `${APP}/artifacts?q=${encodeURIComponent(query)}`, 200, { auth: ADMIN })).body.map((x) => x.digest);
      assert.deepEqual(await q('tags=v2'), [b.digest]);
      assert.deepEqual(await q('tags=~alias'), [a.digest]);
      assert.deepEqual((await q('tags=*')).sort(), [a.digest, b.digest, index.digest].sort());
      assert.deepEqual(await q('tags=nil'), []);
      assert.deepEqual((await q('base=*,tags=nil')).sort(), [amd.digest, arm.digest, signature.digest].sort());
      assert.deepEqual(await q(`digest=${amd.digest}`), [amd.digest]);
      assert.deepEqual(await q(`media_type=${OCI_INDEX}`), [index.digest]);
      assert.deepEqual(await q('base=*,artifact_type=~notary'), [signature.digest]);
      assert.deepEqual(await q('unknown_key=1'), (await q('')).slice(), 'unknown keys are ignored, as Harbor does');
    });

    it('with_tag=false leaves tags out; with_accessory=true lists accessories under their subject', async () => {
      const { body } = await apiJson<ArtifactJson[]>(base, `${APP}/artifacts?with_tag=false`, 200, { auth: ADMIN });
      assert.ok(body.every((x) => x.tags.length === 0));
      const withAcc = await apiJson<ArtifactJson>(base, `${APP}/artifacts/v1?with_accessory=true`, 200, { auth: ADMIN });
      assert.equal(withAcc.body.accessories.length, 1);
      const accessory = withAcc.body.accessories[0];
      assert.equal(accessory?.digest, signature.digest);
      assert.equal(accessory?.type, 'signature.notation');
      assert.equal(accessory?.subject_artifact_digest, a.digest);
      assert.equal(accessory?.subject_artifact_id, withAcc.body.id);
      assert.equal(accessory?.size, signature.size);
      const sig = await apiJson<ArtifactJson>(base, `${APP}/artifacts/${signature.digest}`, 200, { auth: ADMIN });
      assert.equal(sig.body.type, 'UNKNOWN');
      assert.equal(sig.body.artifact_type, NOTATION);
      assert.equal(accessory?.artifact_id, sig.body.id);
    });

    it('reads the image config for extra_attrs when the blob store is wired, else leaves them empty', async () => {
      const { body } = await apiJson<ArtifactJson>(base, `${APP}/artifacts/v2`, 200, { auth: ADMIN });
      if (Object.keys(body.extra_attrs).length > 0) {
        assert.equal(body.extra_attrs.architecture, 'amd64');
        assert.equal(body.extra_attrs.os, 'linux');
        assert.equal(body.extra_attrs.created, '2024-01-02T03:04:05Z');
        assert.deepEqual(body.extra_attrs.config, { Env: ['PATH=/bin'] });
      } else {
        assert.deepEqual(body.extra_attrs, {});
      }
      const list = await apiJson<ArtifactJson[]>(base, `${APP}/artifacts`, 200, { auth: ADMIN });
      assert.ok(list.body.every((x) => Object.keys(x.extra_attrs).length === 0), 'listings do not read blobs');
    });

    it('the service fills extra_attrs of one image from its config blob, and leaves them empty when it cannot read it', async () => {
      const db = server.app.database.db;
      const store = new RegistryStore(db);
      const manifests = new ManifestService({ store, limits: { maxBytes: 4 << 20, validateReferences: true } });
      const access = new AccessControl({ find: async () => undefined, rolesOf: async () => [] });
      const library = { id: 1, name: 'library', public: true, createdAt: 0 };
      const service = (blobs: FilesystemBlobStore) => new ArtifactService({ api: new RegistryApiStore(db), store, manifests, access, blobs });
      const withBlobs = await service(new FilesystemBlobStore(path.join(server.dataDir, 'storage'))).getArtifact(library, 'app', 'v2', { withTag: true, withAccessory: false });
      assert.deepEqual(withBlobs.extra_attrs, { architecture: 'amd64', os: 'linux', created: '2024-01-02T03:04:05Z', config: { Env: ['PATH=/bin'] } });
      const empty = await mkdtemp(path.join(tmpdir(), 'berth-empty-'));
      try {
        const store2 = new FilesystemBlobStore(empty);
        await store2.init();
        const without = await service(store2).getArtifact(library, 'app', 'v2', { withTag: true, withAccessory: false });
        assert.deepEqual(without.extra_attrs, {});
        const index = await service(store2).getArtifact(library, 'app', 'multi', { withTag: true, withAccessory: false });
        assert.deepEqual(index.extra_attrs, {});
      } finally {
        await rm(empty, { recursive: true, force: true });
      }
    });

    it('addresses repositories with slashes double URL-encoded (single encoding works too)', async () => {
      for (const encoded of ['a%252Fb', 'a%2Fb']) {
        const { body } = await apiJson<ArtifactJson[]>(base, `/projects/library/repositories/${encoded}/artifacts`, 200, { auth: ADMIN });
        assert.deepEqual(
          body.map((x) => [x.digest, x.repository_name, x.tags.map((t) => t.name)]),
          [[nested.digest, 'library/a/b', ['latest']]],
        );
      }
      await apiJson(base, '/projects/library/repositories/a%252Fb/artifacts/latest/tags', 200, { auth: ADMIN });
    });

    it('lists an artifact’s tags with paging, q=name and sort', async () => {
      const all = await apiJson<TagJson[]>(base, `${APP}/artifacts/${a.digest}/tags?sort=name`, 200, { auth: ADMIN });
      assert.deepEqual(
        all.body.map((t) => t.name),
        ['v1', 'v1-alias'],
      );
      assert.equal(all.res.headers.get('x-total-count'), '2');
      const desc = await apiJson<TagJson[]>(base, `${APP}/artifacts/v1/tags?sort=-name&page_size=1`, 200, { auth: ADMIN });
      assert.deepEqual(
        desc.body.map((t) => t.name),
        ['v1-alias'],
      );
      assert.equal(desc.res.headers.get('x-total-count'), '2');
      assert.ok(links(desc.res).next);
      const filtered = await apiJson<TagJson[]>(base, `${APP}/artifacts/v1/tags?q=${encodeURIComponent('name=~alias')}`, 200, { auth: ADMIN });
      assert.deepEqual(
        filtered.body.map((t) => t.name),
        ['v1-alias'],
      );
      await assertApiError(await api(base, `${APP}/artifacts/v1/tags?sort=size`, { auth: ADMIN }), 400, 'BAD_REQUEST');
    });

    it('creates a tag (201 with Location), visible through /v2; 409 when the name is taken', async () => {
      const res = await api(base, `${APP}/artifacts/${b.digest}/tags`, { method: 'POST', auth: ADMIN, body: { name: 'v2-extra' } });
      assert.equal(res.status, 201, await res.clone().text());
      assert.equal(await res.text(), '');
      assert.equal(res.headers.get('location'), `/api/v2.0${APP}/artifacts/${encodeURIComponent(b.digest)}/tags/v2-extra`);
      assert.equal(await v2ManifestStatus(base, 'library/app', 'v2-extra'), 200);
      const v2 = await fetch(`${base}/v2/library/app/manifests/v2-extra`, { headers: { authorization: ADMIN, accept: OCI_MANIFEST } });
      assert.equal(v2.headers.get('docker-content-digest'), b.digest);
      await v2.arrayBuffer();

      // A Harbor client sends the whole Tag object: the known fields are accepted.
      const full = await api(base, `${APP}/artifacts/v2/tags`, {
        method: 'POST',
        auth: ADMIN,
        body: { id: 0, repository_id: 0, artifact_id: 0, name: 'v2-full', push_time: '0001-01-01T00:00:00.000Z', pull_time: '0001-01-01T00:00:00.000Z', immutable: false },
      });
      assert.equal(full.status, 201, await full.text());

      await assertApiError(await api(base, `${APP}/artifacts/v2/tags`, { method: 'POST', auth: ADMIN, body: { name: 'v2-extra' } }), 409, 'CONFLICT');
      await assertApiError(await api(base, `${APP}/artifacts/v2/tags`, { method: 'POST', auth: ADMIN, body: { name: 'v1' } }), 409, 'CONFLICT');
      assert.equal(
        (await apiJson<ArtifactJson>(base, `${APP}/artifacts/v1`, 200, { auth: ADMIN })).body.digest,
        a.digest,
        'a refused tag does not move',
      );
    });

    it('refuses bad tag bodies and names with 400 and changes nothing', async () => {
      const before = (await apiJson<TagJson[]>(base, `${APP}/artifacts/v2/tags?page_size=100`, 200, { auth: ADMIN })).body.map((t) => t.name);
      const bad: Array<[unknown, string]> = [
        ['{"name":', 'malformed JSON'],
        [{}, 'missing name'],
        [{ name: 5 }, 'wrong type'],
        [{ name: 'ok', colour: 'red' }, 'unknown field'],
        [{ name: '-starts-with-dash' }, 'invalid tag grammar'],
        [{ name: 'has space' }, 'invalid tag grammar'],
        [{ name: 'x'.repeat(129) }, 'too long'],
        [{ name: '' }, 'empty'],
      ];
      for (const [body, why] of bad) {
        const res = await api(base, `${APP}/artifacts/v2/tags`, { method: 'POST', auth: ADMIN, body });
        assert.equal(res.status, 400, `${why}: ${res.status}`);
        await assertApiError(res, 400, 'BAD_REQUEST');
      }
      await assertApiError(await api(base, `${APP}/artifacts/v2/tags`, { method: 'POST', auth: ADMIN, body: 'name=x', headers: { 'content-type': 'text/plain' } }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, `${APP}/artifacts/v2/tags`, { method: 'POST', auth: ADMIN, body: '<name/>', headers: { 'content-type': 'application/xml' } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
      await assertApiError(await api(base, `${APP}/artifacts/nope/tags`, { method: 'POST', auth: ADMIN, body: { name: 'x1' } }), 404, 'NOT_FOUND');
      const after = (await apiJson<TagJson[]>(base, `${APP}/artifacts/v2/tags?page_size=100`, 200, { auth: ADMIN })).body.map((t) => t.name);
      assert.deepEqual(after.sort(), before.sort());
    });

    it('deletes a tag of the artifact (the artifact stays); 404 for a tag of another artifact or none', async () => {
      await apiJson(base, `${APP}/artifacts/${b.digest}/tags/v2-extra`, 200, { method: 'DELETE', auth: ADMIN });
      assert.equal(await v2ManifestStatus(base, 'library/app', 'v2-extra'), 404);
      assert.equal(await v2ManifestStatus(base, 'library/app', b.digest), 200);
      await assertApiError(await api(base, `${APP}/artifacts/${b.digest}/tags/v2-extra`, { method: 'DELETE', auth: ADMIN }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, `${APP}/artifacts/${b.digest}/tags/v1`, { method: 'DELETE', auth: ADMIN }), 404, 'NOT_FOUND');
      assert.equal(await v2ManifestStatus(base, 'library/app', 'v1'), 200, 'the tag of the other artifact stays');
      await assertApiError(await api(base, `${APP}/artifacts/${b.digest}/tags/bad%20name`, { method: 'DELETE', auth: ADMIN }), 404, 'NOT_FOUND');
    });

    it('answers bad references, unknown repositories and bad query parameters with Harbor errors', async () => {
      const cases: Array<[string, number, string]> = [
        [`${APP}/artifacts/nope`, 404, 'NOT_FOUND'],
        [`${APP}/artifacts/sha256:${'0'.repeat(64)}`, 404, 'NOT_FOUND'],
        [`${APP}/artifacts/sha256:xyz`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts/md5:${'0'.repeat(32)}`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts/bad%20tag`, 400, 'BAD_REQUEST'],
        ['/projects/library/repositories/missing/artifacts/v1', 404, 'NOT_FOUND'],
        ['/projects/library/repositories/UPPER/artifacts', 400, 'BAD_REQUEST'],
        ['/projects/nosuchproject/repositories/app/artifacts', 404, 'NOT_FOUND'],
        [`${APP}/artifacts?page_size=0`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts?page_size=101`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts?page=zero`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts?with_tag=maybe`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts?q=${encodeURIComponent('base=x')}`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts?q=${encodeURIComponent('tags=[1~2]')}`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts?q=${encodeURIComponent('garbage')}`, 400, 'BAD_REQUEST'],
        [`${APP}/artifacts?sort=-nope`, 400, 'BAD_REQUEST'],
        ['/projects/library/repositories/a%25ZZb/artifacts', 400, 'BAD_REQUEST'],
      ];
      for (const [path, status, code] of cases) {
        const res = await api(base, path, { auth: ADMIN });
        assert.equal(res.status, status, `${path}: ${res.status}`);
        await assertApiError(res, status, code);
      }
      // As in Harbor, a repository that does not exist has no artifacts (rather than a 404).
      const missing = await apiJson<ArtifactJson[]>(base, '/projects/library/repositories/missing/artifacts', 200, { auth: ADMIN });
      assert.deepEqual(missing.body, []);
      assert.equal(missing.res.headers.get('x-total-count'), '0');
      const sha512 = await api(base, `${APP}/artifacts/sha512:${'a'.repeat(128)}`, { auth: ADMIN });
      assert.ok([400, 404].includes(sha512.status), `a sha512 reference: ${sha512.status}`);
      await sha512.arrayBuffer();
    });

    it('deleting an index child on its own is refused (412); deleting the index takes its untagged children', async () => {
      await assertApiError(await api(base, `${APP}/artifacts/${amd.digest}`, { method: 'DELETE', auth: ADMIN }), 412, 'PRECONDITION');
      assert.equal(await v2ManifestStatus(base, 'library/app', amd.digest), 200);
      await apiJson(base, `${APP}/artifacts/multi`, 200, { method: 'DELETE', auth: ADMIN });
      for (const gone of ['multi', index.digest, amd.digest, arm.digest]) assert.equal(await v2ManifestStatus(base, 'library/app', gone), 404, gone);
      await assertApiError(await api(base, `${APP}/artifacts/multi`, { auth: ADMIN }), 404, 'NOT_FOUND');
    });

    it('deleting an artifact by digest takes its tags and accessories; /v2 no longer serves them', async () => {
      await apiJson(base, `${APP}/artifacts/${a.digest}`, 200, { method: 'DELETE', auth: ADMIN });
      for (const gone of ['v1', 'v1-alias', a.digest, signature.digest]) assert.equal(await v2ManifestStatus(base, 'library/app', gone), 404, gone);
      await assertApiError(await api(base, `${APP}/artifacts/${a.digest}`, { method: 'DELETE', auth: ADMIN }), 404, 'NOT_FOUND');
      const { body, res } = await apiJson<ArtifactJson[]>(base, `${APP}/artifacts?q=${encodeURIComponent('base=*')}`, 200, { auth: ADMIN });
      assert.deepEqual(
        body.map((x) => x.digest),
        [b.digest],
      );
      assert.equal(res.headers.get('x-total-count'), '1');
      const repo = await apiJson<{ artifact_count: number }>(base, '/projects/library/repositories/app', 200, { auth: ADMIN });
      assert.equal(repo.body.artifact_count, 1);
    });
  });

  describe(`artifact API permissions (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let guest: string;
    let developer: string;
    let maintainer: string;
    let outsider: string;
    const SECRET = '/projects/secret/repositories/app';

    before(async () => {
      server = await startAuthServer(backend);
      base = server.url;
      await createProject(base, 'secret', false);
      guest = await createUser(base, 'gus');
      developer = await createUser(base, 'dev');
      maintainer = await createUser(base, 'mae');
      outsider = await createUser(base, 'olga');
      await addMember(base, 'secret', 'gus', 3);
      await addMember(base, 'secret', 'dev', 2);
      await addMember(base, 'secret', 'mae', 4);
      await pushImage(base, 'library/pub', { tags: ['v1', 'v2'] });
      await pushImage(base, 'secret/app', { tags: ['v1', 'v2', 'v3'] });
      await pushImage(base, 'secret/app', { tags: ['other'] });
    });
    after(async () => {
      assertNoServerErrors(server);
      await server.close();
    });

    it('anonymous visitors may list and read artifacts and tags of a public project, but not change them', async () => {
      const PUB = '/projects/library/repositories/pub';
      assert.equal((await apiJson<ArtifactJson[]>(base, `${PUB}/artifacts`, 200)).body.length, 1);
      await apiJson(base, `${PUB}/artifacts/v1`, 200);
      await apiJson(base, `${PUB}/artifacts/v1/tags`, 200);
      await assertApiError(await api(base, `${PUB}/artifacts/v1`, { method: 'DELETE' }), 401, 'UNAUTHORIZED');
      await assertApiError(await api(base, `${PUB}/artifacts/v1/tags`, { method: 'POST', body: { name: 'x' } }), 401, 'UNAUTHORIZED');
      await assertApiError(await api(base, `${PUB}/artifacts/v1/tags/v2`, { method: 'DELETE' }), 401, 'UNAUTHORIZED');
      assert.equal(await v2ManifestStatus(base, 'library/pub', 'v1'), 200);
      // A logged-in non-member of a public project reads but may not delete.
      await apiJson(base, `${PUB}/artifacts/v1`, 200, { auth: outsider });
      await assertApiError(await api(base, `${PUB}/artifacts/v1`, { method: 'DELETE', auth: outsider }), 403, 'FORBIDDEN');
    });

    it('a private project is invisible to anonymous visitors (401) and non-members (404)', async () => {
      for (const path of [`${SECRET}/artifacts`, `${SECRET}/artifacts/v1`, `${SECRET}/artifacts/v1/tags`]) {
        await assertApiError(await api(base, path), 401, 'UNAUTHORIZED');
        await assertApiError(await api(base, path, { auth: outsider }), 404, 'NOT_FOUND');
      }
      await assertApiError(await api(base, `${SECRET}/artifacts/v1`, { method: 'DELETE', auth: outsider }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, `${SECRET}/artifacts/v1/tags`, { method: 'POST', auth: outsider, body: { name: 'x' } }), 404, 'NOT_FOUND');
    });

    it('guests read; developers add tags; maintainers delete tags and artifacts', async () => {
      await apiJson(base, `${SECRET}/artifacts`, 200, { auth: guest });
      await apiJson(base, `${SECRET}/artifacts/v1/tags`, 200, { auth: guest });
      await assertApiError(await api(base, `${SECRET}/artifacts/v1/tags`, { method: 'POST', auth: guest, body: { name: 'g1' } }), 403, 'FORBIDDEN');
      await assertApiError(await api(base, `${SECRET}/artifacts/v1/tags/v2`, { method: 'DELETE', auth: guest }), 403, 'FORBIDDEN');
      await assertApiError(await api(base, `${SECRET}/artifacts/v1`, { method: 'DELETE', auth: guest }), 403, 'FORBIDDEN');

      await apiJson(base, `${SECRET}/artifacts/v1/tags`, 201, { method: 'POST', auth: developer, body: { name: 'dev1' } });
      await assertApiError(await api(base, `${SECRET}/artifacts/v1/tags/dev1`, { method: 'DELETE', auth: developer }), 403, 'FORBIDDEN');
      await assertApiError(await api(base, `${SECRET}/artifacts/v1`, { method: 'DELETE', auth: developer }), 403, 'FORBIDDEN');

      await apiJson(base, `${SECRET}/artifacts/v1/tags/dev1`, 200, { method: 'DELETE', auth: maintainer });
      await apiJson(base, `${SECRET}/artifacts/other`, 200, { method: 'DELETE', auth: maintainer });
      assert.equal(await v2ManifestStatus(base, 'secret/app', 'other'), 404);
      assert.equal(await v2ManifestStatus(base, 'secret/app', 'v1'), 200);
    });
  });
}
