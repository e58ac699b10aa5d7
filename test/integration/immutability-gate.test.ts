/**
 * The tag immutability gate over a real socket with authentication on, on every database
 * backend, through both surfaces:
 * - /v2: a manifest PUT that would move an immutable tag answers 403 DENIED naming the tag and
 *   the rule (re-pushing the same digest, creating the tag, pushing by digest and mutable tags
 *   go through); DELETE of an immutable tag, or of a manifest by digest while one points at it,
 *   answers 403 DENIED;
 * - the management API: deleting such a tag, artifact (also through its accessories) or the
 *   whole repository answers Harbor's 412 PRECONDITION; tags show `immutable`; a tag added
 *   through the API is guarded like a pushed one;
 * and the rule model: excludes, regex, disabled rules, a rule change applying at once. Every
 * refusal changes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, api, apiJson, assertApiError, createProject, type Pushed, pushImage, startAuthServer, v2ManifestStatus } from '../helpers/harbor-api.ts';
import { assertNoServerErrors } from '../helpers/http.ts';
import { OCI_INDEX, OCI_MANIFEST } from '../helpers/oci.ts';
import type { TestServer } from '../helpers/server.ts';

const NOTATION = 'application/vnd.cncf.notary.signature';

function rule(repoPattern: string, tagPattern: string, extra: { kind?: string; tagDecoration?: string; repoDecoration?: string; disabled?: boolean } = {}) {
  return {
    disabled: extra.disabled ?? false,
    tag_selectors: [{ kind: extra.kind ?? 'doublestar', decoration: extra.tagDecoration ?? 'matches', pattern: tagPattern }],
    scope_selectors: { repository: [{ kind: 'doublestar', decoration: extra.repoDecoration ?? 'repoMatches', pattern: repoPattern }] },
  };
}

for (const backend of BACKENDS) {
  describe(`tag immutability gate (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let ruleV: number;

    const v2 = (method: string, path: string, body?: Buffer, mediaType = OCI_MANIFEST) =>
      fetch(`${base}/v2/${path}`, { method, headers: { authorization: ADMIN, ...(body ? { 'content-type': mediaType } : {}) }, ...(body ? { body } : {}) });
    const push = (repository: string, tag: string, image: Pushed) => v2('PUT', `${repository}/manifests/${tag}`, image.bytes, image.mediaType);
    const digestOf = async (repository: string, tag: string) => {
      const res = await fetch(`${base}/v2/${repository}/manifests/${tag}`, { method: 'HEAD', headers: { authorization: ADMIN, accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
      return res.status === 200 ? res.headers.get('docker-content-digest') : `HTTP ${res.status}`;
    };
    const tagsOf = async (repository: string) => {
      const res = await v2('GET', `${repository}/tags/list`);
      return ((await res.json()) as { tags: string[] }).tags;
    };
    const createRule = async (project: string, body: unknown) => {
      const { res } = await apiJson(base, `/projects/${project}/immutabletagrules`, 201, { method: 'POST', auth: ADMIN, body });
      return Number((res.headers.get('location') ?? '').split('/').at(-1));
    };
    /** Asserts /v2's refusal: 403 DENIED with a message naming the tag as immutable. */
    const assertDenied = async (res: Response, tag: string, ruleId?: number) => {
      const text = await res.text();
      assert.equal(res.status, 403, text);
      const body = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
      assert.equal(body.errors[0]?.code, 'DENIED', text);
      assert.match(body.errors[0]?.message ?? '', new RegExp(`^tag ${tag} is immutable \\(rule ${ruleId ?? '\\d+'} of project `), text);
    };
    const apiRepo = (repository: string) => `/projects/gate/repositories/${encodeURIComponent(encodeURIComponent(repository))}`;

    before(async () => {
      server = await startAuthServer(backend);
      base = server.url;
      await createProject(base, 'gate', false);
      ruleV = await createRule('gate', rule('**', 'v*'));
    });
    after(() => server.close());

    it('/v2: concurrent first pushes of different content to a new immutable tag: exactly one wins, the others are refused', async () => {
      // Four images pushed by digest first, so the tag pushes below race on the tag alone.
      const images: Pushed[] = [];
      for (let i = 0; i < 4; i++) images.push(await pushImage(base, 'gate/race'));
      for (let round = 0; round < 6; round++) {
        const tag = `v-race-${round}`;
        const results = await Promise.all(images.map((image) => push('gate/race', tag, image)));
        const bodies = await Promise.all(results.map((r) => r.text()));
        const statuses = results.map((r) => r.status);
        assert.equal(statuses.filter((s) => s === 201).length, 1, `round ${round}: ${statuses.join(',')} ${bodies.join(' ')}`);
        assert.equal(statuses.filter((s) => s === 403).length, images.length - 1, `round ${round}: ${statuses.join(',')}`);
        for (const [i, body] of bodies.entries()) if (statuses[i] === 403) assert.match(body, new RegExp(`tag ${tag} is immutable`));
        // The tag points at the winner's content, and stays there.
        const winner = images[statuses.indexOf(201)] as Pushed;
        assert.equal(await digestOf('gate/race', tag), winner.digest);
      }
    });

    it('/v2: moving an immutable tag is refused with 403 DENIED; the same digest, new tags, digests and mutable tags go through', async () => {
      const a = await pushImage(base, 'gate/app', { tags: ['v1'] });
      const b = await pushImage(base, 'gate/app', { tags: ['latest'] });
      await assertDenied(await push('gate/app', 'v1', b), 'v1', ruleV);
      assert.equal(await digestOf('gate/app', 'v1'), a.digest);
      assert.equal((await push('gate/app', 'v1', a)).status, 201, 're-pushing the same digest');
      assert.equal((await push('gate/app', 'v2', b)).status, 201, 'a new immutable tag may be created');
      await assertDenied(await push('gate/app', 'v2', a), 'v2');
      assert.equal((await push('gate/app', 'latest', a)).status, 201, 'a mutable tag moves');
      assert.equal((await push('gate/app', b.digest, b)).status, 201, 'a push by digest');
      assert.deepEqual([await digestOf('gate/app', 'v1'), await digestOf('gate/app', 'v2'), await digestOf('gate/app', 'latest')], [a.digest, b.digest, a.digest]);
      assertNoServerErrors(server);
    });

    it('/v2: deleting an immutable tag, or a manifest one points at, is refused; other tags and manifests are deletable', async () => {
      const a = await pushImage(base, 'gate/del', { tags: ['v1', 'latest'] });
      const b = await pushImage(base, 'gate/del', { tags: ['dev'] });
      await assertDenied(await v2('DELETE', 'gate/del/manifests/v1'), 'v1');
      await assertDenied(await v2('DELETE', `gate/del/manifests/${a.digest}`), 'v1');
      assert.equal((await v2('DELETE', 'gate/del/manifests/v9')).status, 404, 'a missing tag stays a 404');
      assert.deepEqual(await tagsOf('gate/del'), ['dev', 'latest', 'v1']);
      assert.equal((await v2('DELETE', 'gate/del/manifests/latest')).status, 202, 'another tag of the same artifact');
      assert.equal((await v2('DELETE', `gate/del/manifests/${b.digest}`)).status, 202, 'a manifest without immutable tags');
      assert.deepEqual(await tagsOf('gate/del'), ['v1']);
      assert.equal(await v2ManifestStatus(base, 'gate/del', a.digest), 200);
    });

    it('the API answers 412 for an immutable tag, its artifact (by tag or digest) and its repository; other tags go; tags show immutable', async () => {
      const a = await pushImage(base, 'gate/api', { tags: ['v1', 'latest', 'old'] });
      const repo = apiRepo('api');
      await assertApiError(await api(base, `${repo}/artifacts/${a.digest}/tags/v1`, { method: 'DELETE', auth: ADMIN }), 412, 'PRECONDITION');
      await assertApiError(await api(base, `${repo}/artifacts/v1`, { method: 'DELETE', auth: ADMIN }), 412, 'PRECONDITION');
      await assertApiError(await api(base, `${repo}/artifacts/${a.digest}`, { method: 'DELETE', auth: ADMIN }), 412, 'PRECONDITION');
      const refusal = await api(base, repo, { method: 'DELETE', auth: ADMIN });
      const text = await refusal.clone().text();
      await assertApiError(refusal, 412, 'PRECONDITION');
      assert.match(text, /immutable tags \(v1\)/);
      await apiJson(base, `${repo}/artifacts/${a.digest}/tags/old`, 200, { method: 'DELETE', auth: ADMIN });
      const { body: tags } = await apiJson<Array<{ name: string; immutable: boolean }>>(base, `${repo}/artifacts/${a.digest}/tags?with_immutable_status=true&sort=name`, 200, { auth: ADMIN });
      assert.deepEqual(
        tags.map((t) => [t.name, t.immutable]),
        [
          ['latest', false],
          ['v1', true],
        ],
      );
      const { body: artifact } = await apiJson<{ tags: Array<{ name: string; immutable: boolean }> }>(base, `${repo}/artifacts/v1?with_immutable_status=true`, 200, { auth: ADMIN });
      assert.deepEqual(artifact.tags.map((t) => [t.name, t.immutable]).sort(), [
        ['latest', false],
        ['v1', true],
      ]);
      assert.deepEqual(await tagsOf('gate/api'), ['latest', 'v1']);
    });

    it('a tag added through the API is guarded like a pushed one', async () => {
      const a = await pushImage(base, 'gate/added', { tags: ['base'] });
      const b = await pushImage(base, 'gate/added', { tags: ['other'] });
      const repo = apiRepo('added');
      await apiJson(base, `${repo}/artifacts/${a.digest}/tags`, 201, { method: 'POST', auth: ADMIN, body: { name: 'v7' } });
      await assertDenied(await push('gate/added', 'v7', b), 'v7');
      await assertApiError(await api(base, `${repo}/artifacts/${a.digest}/tags/v7`, { method: 'DELETE', auth: ADMIN }), 412, 'PRECONDITION');
      assert.equal(await digestOf('gate/added', 'v7'), a.digest);
    });

    it("deleting an artifact whose accessory carries an immutable tag is refused, and nothing is deleted; /v2 deletes the subject alone", async () => {
      const sigRule = await createRule('gate', rule('signed', 'sig-*'));
      const subject = await pushImage(base, 'gate/signed', { tags: ['c1'] });
      const signature = await pushImage(base, 'gate/signed', { tags: ['sig-1'], subject, artifactType: NOTATION });
      await assertApiError(await api(base, `${apiRepo('signed')}/artifacts/c1`, { method: 'DELETE', auth: ADMIN }), 412, 'PRECONDITION');
      assert.deepEqual([await v2ManifestStatus(base, 'gate/signed', subject.digest), await v2ManifestStatus(base, 'gate/signed', signature.digest)], [200, 200]);
      assert.equal((await v2('DELETE', `gate/signed/manifests/${subject.digest}`)).status, 202);
      assert.equal(await v2ManifestStatus(base, 'gate/signed', signature.digest), 200);
      await apiJson(base, `/projects/gate/immutabletagrules/${sigRule}`, 200, { method: 'DELETE', auth: ADMIN });
    });

    it('excludes, regex and disabled rules; a rule change applies to the next request', async () => {
      await createProject(base, 'kinds', false);
      await createRule('kinds', rule('**', 'dev-*', { tagDecoration: 'excludes', repoDecoration: 'repoExcludes' }));
      const regexRule = await createRule('kinds', rule('tools/**', 'v\\d+\\.\\d+\\.\\d+', { kind: 'regex' }));
      const disabled = await createRule('kinds', rule('**', 'dev-*', { disabled: true }));
      const a = await pushImage(base, 'kinds/tools/lint', { tags: ['v1.2.3', 'v1.2', 'dev-1'] });
      const b = await pushImage(base, 'kinds/tools/lint', { tags: ['b'] });
      // repoExcludes ** excludes every repository: the first rule never applies.
      assert.equal((await push('kinds/tools/lint', 'dev-1', b)).status, 201, 'the disabled rule is ignored');
      assert.equal((await push('kinds/tools/lint', 'v1.2', b)).status, 201, 'the regex is anchored: v1.2 is mutable');
      await assertDenied(await push('kinds/tools/lint', 'v1.2.3', b), 'v1\\.2\\.3', regexRule);
      await pushImage(base, 'kinds/app', { tags: ['v1.2.3'] });
      const d = await pushImage(base, 'kinds/app', { tags: ['d'] });
      assert.equal((await push('kinds/app', 'v1.2.3', d)).status, 201, 'outside tools/**');
      assert.equal(await digestOf('kinds/app', 'v1.2.3'), d.digest);

      // Enabling the disabled rule applies at once.
      await apiJson(base, `/projects/kinds/immutabletagrules/${disabled}`, 200, { method: 'PUT', auth: ADMIN, body: rule('**', 'dev-*') });
      await assertDenied(await push('kinds/tools/lint', 'dev-1', a), 'dev-1', disabled);
      // Disabling the regex rule applies at once too.
      await apiJson(base, `/projects/kinds/immutabletagrules/${regexRule}`, 200, { method: 'PUT', auth: ADMIN, body: rule('tools/**', 'v\\d+\\.\\d+\\.\\d+', { kind: 'regex', disabled: true }) });
      assert.equal((await push('kinds/tools/lint', 'v1.2.3', b)).status, 201);
      assert.equal((await v2('DELETE', 'kinds/tools/lint/manifests/v1.2.3')).status, 202);
      assertNoServerErrors(server);
    });

    it('repositories of other projects and without rules are not affected', async () => {
      const a = await pushImage(base, 'library/free', { tags: ['v1'] });
      const b = await pushImage(base, 'library/free', { tags: ['v2'] });
      assert.equal((await push('library/free', 'v1', b)).status, 201);
      assert.equal((await v2('DELETE', 'library/free/manifests/v1')).status, 202);
      assert.equal((await v2('DELETE', `library/free/manifests/${a.digest}`)).status, 202);
    });
  });
}
