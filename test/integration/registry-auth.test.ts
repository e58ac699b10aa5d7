/**
 * Docker token auth on /v2 over a real socket: the challenge, the token endpoint, bearer and Basic
 * access, anonymous pulls of public projects, pushes to missing projects, the filtered catalog.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { BACKENDS } from '../helpers/backends.ts';
import { assertError } from '../helpers/http.ts';
import { addMember, createProject, createUser, registryToken, type TestUser, tokenAccess } from '../helpers/iam.ts';
import { imageManifest, pushBlob, putManifest, randomBlob } from '../helpers/oci.ts';
import { ADMIN_AUTH, basicAuth, startTestServer, type TestServer } from '../helpers/server.ts';

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

for (const backend of BACKENDS) {
  describe(`registry token auth (${backend})`, () => {
    let server: TestServer;
    let dev: TestUser;
    let guest: TestUser;
    let outsider: TestUser;
    let privateId: number;

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
      dev = await createUser(server, 'dev');
      guest = await createUser(server, 'guest');
      outsider = await createUser(server, 'outsider');
      privateId = await createProject(server, 'team');
      await addMember(server, privateId, dev, 2);
      await addMember(server, privateId, guest, 3);
      await createProject(server, 'other');
      // Content to pull: one image in the public library and one in the private project.
      for (const repo of ['library/app', 'team/app']) {
        const image = await imageManifest(server.url, repo, { headers: { authorization: ADMIN_AUTH } });
        const res = await putManifest(server.url, repo, 'v1', image.bytes, undefined, { authorization: ADMIN_AUTH });
        assert.equal(res.status, 201, await res.text());
      }
    });
    after(() => server.close());

    describe('the challenge', () => {
      it('answers /v2/ without credentials with 401 and a Bearer challenge without scope', async () => {
        const res = await fetch(`${server.url}/v2/`);
        assert.equal(res.status, 401);
        assert.equal(res.headers.get('www-authenticate'), `Bearer realm="${server.url}/service/token",service="berth"`);
        assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
        await assertError(res, 401, 'UNAUTHORIZED');
      });

      it('names the scope a request needs: pull for GET, pull,push for a push, both repositories for a mount', async () => {
        const cases: Array<[string, string, string]> = [
          ['GET', '/v2/library/app/manifests/v1', 'repository:library/app:pull'],
          ['HEAD', '/v2/library/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000', 'repository:library/app:pull'],
          ['POST', '/v2/team/app/blobs/uploads/', 'repository:team/app:pull,push'],
          ['DELETE', '/v2/team/app/manifests/v1', 'repository:team/app:delete'],
          ['POST', '/v2/team/new/blobs/uploads/?mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=library/app', 'repository:team/new:pull,push repository:library/app:pull'],
          ['GET', '/v2/_catalog', 'registry:catalog:*'],
        ];
        for (const [method, path, scope] of cases) {
          const res = await fetch(`${server.url}${path}`, { method });
          assert.equal(res.status, 401, `${method} ${path}`);
          assert.equal(res.headers.get('www-authenticate'), `Bearer realm="${server.url}/service/token",service="berth",scope="${scope}"`, `${method} ${path}`);
          await res.arrayBuffer();
        }
      });

      it('challenges even a GET on a public project without credentials, so clients fetch a token (as Harbor does)', async () => {
        const res = await fetch(`${server.url}/v2/library/app/manifests/v1`);
        assert.equal(res.status, 401);
        await res.arrayBuffer();
      });
    });

    describe('GET /service/token', () => {
      it('answers docker login (credentials, no scope) with a token that opens /v2/', async () => {
        const res = await fetch(`${server.url}/service/token?account=dev&client_id=docker&offline_token=true&service=berth`, { headers: { authorization: dev.auth } });
        assert.equal(res.status, 200);
        const body = (await res.json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
        assert.equal(body.access_token, body.token);
        assert.equal(body.expires_in, 1800);
        assert.ok(Math.abs(Date.parse(body.issued_at) - Date.now()) < 60_000);
        assert.deepEqual(tokenAccess(body.token), []);
        const v2 = await fetch(`${server.url}/v2/`, { headers: bearer(body.token) });
        assert.equal(v2.status, 200);
      });

      it('grants the intersection of what was asked and what the caller may do, over several scopes', async () => {
        const asDev = await registryToken(server, ['repository:team/app:pull,push,delete', 'repository:other/app:pull', 'repository:library/app:pull,push'], dev.auth);
        assert.deepEqual(tokenAccess(asDev), [
          { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
          { type: 'repository', name: 'library/app', actions: ['pull'] },
        ]);
        const asGuest = await registryToken(server, ['repository:team/app:pull,push'], guest.auth);
        assert.deepEqual(tokenAccess(asGuest), [{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
        const asAdmin = await registryToken(server, ['repository:team/app:*', 'registry:catalog:*'], ADMIN_AUTH);
        assert.deepEqual(tokenAccess(asAdmin), [
          { type: 'repository', name: 'team/app', actions: ['pull', 'push', 'delete'] },
          { type: 'registry', name: 'catalog', actions: ['*'] },
        ]);
      });

      it('takes several scopes in one space-separated parameter, and names with a registry host', async () => {
        const token = await registryToken(server, ['repository:team/app:pull repository:library/app:pull'], dev.auth);
        assert.deepEqual(
          tokenAccess(token).map((a) => a.name),
          ['team/app', 'library/app'],
        );
      });

      it('grants anonymous callers pull on public projects only, and nothing on unknown projects', async () => {
        const token = await registryToken(server, ['repository:library/app:pull,push', 'repository:team/app:pull', 'repository:ghost/app:pull']);
        assert.deepEqual(tokenAccess(token), [{ type: 'repository', name: 'library/app', actions: ['pull'] }]);
      });

      it('refuses an anonymous request without scope, wrong credentials, a malformed scope and another service', async () => {
        await assertError(await fetch(`${server.url}/service/token?service=berth`), 401, 'UNAUTHORIZED');
        const wrong = await fetch(`${server.url}/service/token?service=berth&scope=repository:team/app:pull`, { headers: { authorization: basicAuth('dev', 'wrong-password') } });
        await assertError(wrong, 401, 'UNAUTHORIZED');
        const unknown = await fetch(`${server.url}/service/token?service=berth`, { headers: { authorization: basicAuth('nobody', 'wrong-password') } });
        const unknownBody = await unknown.text();
        assert.equal(unknown.status, 401);
        assert.equal(unknownBody, JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] }), 'an unknown user gets the same answer as a wrong password');
        for (const scope of ['repository:team/app', 'repository::pull', 'repository:Team/App:pull', 'repo sitory:team/app:pull']) {
          await assertError(await fetch(`${server.url}/service/token?service=berth&scope=${encodeURIComponent(scope)}`, { headers: { authorization: dev.auth } }), 400, 'BAD_REQUEST');
        }
        await assertError(await fetch(`${server.url}/service/token?service=harbor-registry&scope=repository:team/app:pull`, { headers: { authorization: dev.auth } }), 400, 'BAD_REQUEST');
      });
    });

    describe('access on /v2', () => {
      it('lets a token holder do what the token grants and nothing else', async () => {
        const token = await registryToken(server, ['repository:team/app:pull'], dev.auth);
        assert.equal((await fetch(`${server.url}/v2/team/app/manifests/v1`, { headers: bearer(token) })).status, 200);
        const push = await fetch(`${server.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: bearer(token) });
        await assertError(push, 403, 'DENIED');
        const elsewhere = await fetch(`${server.url}/v2/library/app/manifests/v1`, { headers: bearer(token) });
        await assertError(elsewhere, 403, 'DENIED');
      });

      it('refuses tampered, foreign-key and wrong-audience tokens with a fresh challenge', async () => {
        const token = await registryToken(server, ['repository:team/app:pull'], dev.auth);
        const [header, payload, signature] = token.split('.') as [string, string, string];
        const widened = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), access: [{ type: 'repository', name: 'team/app', actions: ['pull', 'push', 'delete'] }] })).toString('base64url');
        const foreignKey = new Uint8Array(32).fill(7);
        const hs = await new SignJWT({ access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] })
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject('dev')
          .setAudience('berth')
          .setIssuer('berth-token-issuer')
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(foreignKey);
        for (const [label, bad] of [
          ['tampered payload', `${header}.${widened}.${signature}`],
          ['HS256 with some key', hs],
          ['garbage', 'not-a-token'],
        ] as const) {
          const res = await fetch(`${server.url}/v2/team/app/manifests/v1`, { headers: bearer(bad) });
          assert.equal(res.status, 401, label);
          assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm=.*,error="invalid_token"$/, label);
          await res.arrayBuffer();
        }
      });

      it('refuses a token issued before its project was created (a deleted project recreated under the same name)', async () => {
        const id = await createProject(server, 'phoenix');
        await addMember(server, id, dev, 2);
        const token = await registryToken(server, ['repository:phoenix/app:pull,push'], dev.auth);
        assert.equal((await fetch(`${server.url}/v2/phoenix/app/tags/list`, { headers: bearer(token) })).status, 404, 'valid for the project it was issued on');
        // The project is deleted and another one takes its name: its creation time is after the token's.
        await server.app.database.db.updateTable('projects').set({ created_at: Date.now() + 5000 }).where('id', '=', id).execute();
        server.app.iam.cachedProjects.forget();
        const res = await fetch(`${server.url}/v2/phoenix/app/tags/list`, { headers: bearer(token) });
        assert.equal(res.status, 401);
        assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
        await res.arrayBuffer();
      });

      it('applies a project turning public or private at once, though the guard caches projects', async () => {
        const setPublic = async (value: boolean) => {
          const res = await fetch(`${server.url}/api/v2.0/projects/other`, {
            method: 'PUT',
            headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' },
            body: JSON.stringify({ metadata: { public: String(value) } }),
          });
          assert.equal(res.status, 200, await res.text());
        };
        const anonymousPull = async () => tokenAccess(await registryToken(server, ['repository:other/app:pull']));
        assert.deepEqual(await anonymousPull(), []);
        await setPublic(true);
        assert.deepEqual(await anonymousPull(), [{ type: 'repository', name: 'other/app', actions: ['pull'] }]);
        await setPublic(false);
        assert.deepEqual(await anonymousPull(), []);
      });

      it('accepts Basic credentials directly on /v2, as Harbor does', async () => {
        assert.equal((await fetch(`${server.url}/v2/team/app/manifests/v1`, { headers: { authorization: guest.auth } })).status, 200);
        await assertError(await fetch(`${server.url}/v2/team/app/manifests/v1`, { headers: { authorization: outsider.auth } }), 403, 'DENIED');
        const wrong = await fetch(`${server.url}/v2/team/app/manifests/v1`, { headers: { authorization: basicAuth('guest', 'nope-Nope1') } });
        assert.equal(wrong.status, 401);
        assert.match(wrong.headers.get('www-authenticate') ?? '', /scope="repository:team\/app:pull"/);
        await wrong.arrayBuffer();
      });

      it('lets anyone pull from the public library with an anonymous token, and no one anonymous into a private project', async () => {
        const token = await registryToken(server, ['repository:library/app:pull']);
        assert.equal((await fetch(`${server.url}/v2/library/app/manifests/v1`, { headers: bearer(token) })).status, 200);
        const privateToken = await registryToken(server, ['repository:team/app:pull']);
        const res = await fetch(`${server.url}/v2/team/app/manifests/v1`, { headers: bearer(privateToken) });
        assert.equal(res.status, 401, 'an anonymous caller is challenged again, not told the project exists');
        // With error="insufficient_scope", containerd gives up instead of retrying the same token.
        assert.equal(res.headers.get('www-authenticate'), `Bearer realm="${server.url}/service/token",service="berth",scope="repository:team/app:pull",error="insufficient_scope"`);
        await res.arrayBuffer();
      });

      it('refuses a push to a project that does not exist with NAME_UNKNOWN, and to a name without a project', async () => {
        const missing = await fetch(`${server.url}/v2/ghost/app/blobs/uploads/`, { method: 'POST', headers: { authorization: ADMIN_AUTH } });
        await assertError(missing, 404, 'NAME_UNKNOWN');
        const bare = await fetch(`${server.url}/v2/app/blobs/uploads/`, { method: 'POST', headers: { authorization: ADMIN_AUTH } });
        await assertError(bare, 404, 'NAME_UNKNOWN');
        assert.equal(await server.app.database.db.selectFrom('repositories').select('id').where('name', 'in', ['ghost/app', 'app']).executeTakeFirst(), undefined, 'nothing was created');
      });

      it('lets a developer push and a guest only pull; cross-project access is impossible', async () => {
        const blob = randomBlob(100);
        await pushBlob(server.url, 'team/pushed', blob, { authorization: dev.auth });
        await assert.rejects(pushBlob(server.url, 'team/pushed', randomBlob(10), { authorization: guest.auth }), /403/);
        await assert.rejects(pushBlob(server.url, 'other/pushed', randomBlob(10), { authorization: dev.auth }), /403/);
        // A mount from a project the caller cannot read is refused, even though the blob exists.
        const adminOther = await pushBlob(server.url, 'other/secret', randomBlob(64), { authorization: ADMIN_AUTH });
        const mount = await fetch(`${server.url}/v2/team/stolen/blobs/uploads/?mount=${adminOther.digest}&from=other/secret`, { method: 'POST', headers: { authorization: dev.auth } });
        await assertError(mount, 403, 'DENIED');
        // Without `from` (OCI 1.1 "any blob the registry holds") the digest alone must not copy it
        // into the caller's project either: the registry starts a normal upload instead.
        const blind = await fetch(`${server.url}/v2/team/stolen/blobs/uploads/?mount=${adminOther.digest}`, { method: 'POST', headers: { authorization: dev.auth } });
        assert.equal(blind.status, 202);
        await blind.arrayBuffer();
        const head = await fetch(`${server.url}/v2/team/stolen/blobs/${adminOther.digest}`, { method: 'HEAD', headers: { authorization: dev.auth } });
        assert.equal(head.status, 404);
      });

      it('lists in the catalog only the repositories the caller may see', async () => {
        const list = async (auth: string) => {
          const token = await registryToken(server, ['registry:catalog:*'], auth);
          const res = await fetch(`${server.url}/v2/_catalog`, { headers: bearer(token) });
          assert.equal(res.status, 200);
          return ((await res.json()) as { repositories: string[] }).repositories;
        };
        const all = await list(ADMIN_AUTH);
        assert.ok(all.includes('team/app') && all.includes('library/app'));
        const asOutsider = await list(outsider.auth);
        assert.ok(asOutsider.includes('library/app'));
        assert.ok(!asOutsider.some((r) => r.startsWith('team/') || r.startsWith('other/')), `outsider saw ${asOutsider}`);
        const asDev = await list(dev.auth);
        assert.ok(asDev.includes('team/app') && !asDev.some((r) => r.startsWith('other/')));
        // Paging keeps its meaning with hidden entries: one at a time, the outsider sees the same names.
        const token = await registryToken(server, ['registry:catalog:*'], outsider.auth);
        const paged: string[] = [];
        let url = `${server.url}/v2/_catalog?n=1`;
        for (let i = 0; i < 20; i++) {
          const res = await fetch(url, { headers: bearer(token) });
          paged.push(...((await res.json()) as { repositories: string[] }).repositories);
          const link = res.headers.get('link');
          if (!link) break;
          url = `${server.url}${/<([^>]+)>/.exec(link)?.[1]}`;
        }
        assert.deepEqual(paged, asOutsider);
        const anonymous = await fetch(`${server.url}/v2/_catalog`, { headers: bearer(await registryToken(server, ['registry:catalog:*'])) });
        assert.equal(anonymous.status, 401);
        await anonymous.arrayBuffer();
      });
    });
  });
}
