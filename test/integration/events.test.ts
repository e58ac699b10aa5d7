/**
 * Domain events as the audit log and webhooks receive them: registry pushes, pulls and deletes
 * (and their refusals), management-API changes with their outcome, and checked logins, each with
 * its actor, address, user agent and request id.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DomainEvent } from '../../src/platform/events/bus.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { createProject, createUser, registryToken, type TestUser } from '../helpers/iam.ts';
import { imageManifest, putManifest, sha256 } from '../helpers/oci.ts';
import { ADMIN_AUTH, basicAuth, startTestServer, type TestServer } from '../helpers/server.ts';

for (const backend of BACKENDS) {
  describe(`domain events (${backend})`, () => {
    let server: TestServer;
    let dev: TestUser;
    const seen: DomainEvent[] = [];
    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
      server.app.events.on('*', (e) => seen.push(e));
      dev = await createUser(server, 'dev');
      await createProject(server, 'evt');
    });
    after(() => server.close());
    const take = () => seen.splice(0, seen.length);

    it('announces a push, a pull and deletes through /v2 with the actor and the request', async () => {
      const headers = { authorization: ADMIN_AUTH, 'user-agent': 'events-test/1', 'x-request-id': 'req-push-1' };
      const image = await imageManifest(server.url, 'evt/app', { headers: { authorization: ADMIN_AUTH } });
      take();
      assert.equal((await putManifest(server.url, 'evt/app', 'v1', image.bytes, undefined, headers)).status, 201);
      const digest = sha256(image.bytes);
      const [push] = take().filter((e) => e.type === 'registry.operation');
      assert.deepEqual(push, {
        type: 'registry.operation',
        at: push?.at,
        actor: { name: 'admin', kind: 'user', address: '127.0.0.1', userAgent: 'events-test/1', requestId: 'req-push-1' },
        result: 'success',
        operation: 'push',
        resourceType: 'artifact',
        repository: 'evt/app',
        reference: 'v1',
        digest,
        tag: 'v1',
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: image.bytes.length,
        status: 201,
      });
      assert.ok(Math.abs((push?.at ?? 0) - Date.now()) < 10_000);

      const token = await registryToken(server, ['repository:evt/app:pull'], ADMIN_AUTH);
      await (await fetch(`${server.url}/v2/evt/app/manifests/v1`, { headers: { authorization: `Bearer ${token}` } })).arrayBuffer();
      await (await fetch(`${server.url}/v2/evt/app/manifests/v1`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } })).arrayBuffer();
      const pulls = take().filter((e) => e.type === 'registry.operation');
      assert.equal(pulls.length, 1, 'a GET is a pull, a HEAD is not');
      assert.equal(pulls[0]?.type === 'registry.operation' && pulls[0].operation, 'pull');
      assert.equal(pulls[0]?.actor.name, 'admin', 'the token holder');

      await (await fetch(`${server.url}/v2/evt/app/manifests/v1`, { method: 'DELETE', headers: { authorization: ADMIN_AUTH } })).arrayBuffer();
      await (await fetch(`${server.url}/v2/evt/app/manifests/${digest}`, { method: 'DELETE', headers: { authorization: ADMIN_AUTH } })).arrayBuffer();
      const deletes = take().filter((e) => e.type === 'registry.operation');
      assert.deepEqual(
        deletes.map((e) => e.type === 'registry.operation' && [e.operation, e.resourceType, e.reference, e.result]),
        [
          ['delete', 'tag', 'v1', 'success'],
          ['delete', 'artifact', digest, 'success'],
        ],
      );
    });

    it('announces refusals with their reason, but not the 401 that starts every token handshake', async () => {
      take();
      await (await fetch(`${server.url}/v2/evt/app/manifests/v1`)).arrayBuffer();
      assert.deepEqual(
        take().filter((e) => e.type === 'registry.operation'),
        [],
      );
      const image = await imageManifest(server.url, 'evt/app', { headers: { authorization: ADMIN_AUTH } });
      take();
      const res = await putManifest(server.url, 'evt/app', 'v2', image.bytes, undefined, { authorization: dev.auth });
      assert.equal(res.status, 403);
      const [refused] = take().filter((e) => e.type === 'registry.operation');
      assert.equal(refused?.type === 'registry.operation' && refused.result, 'failure');
      assert.equal(refused?.type === 'registry.operation' && refused.status, 403);
      assert.match((refused?.type === 'registry.operation' && refused.reason) || '', /DENIED/);
      assert.equal(refused?.actor.name, 'dev');
    });

    it('announces management-API changes with their resource, project and outcome, and not reads', async () => {
      take();
      const create = await fetch(`${server.url}/api/v2.0/projects`, {
        method: 'POST',
        headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ project_name: 'evt2', metadata: { public: 'false' } }),
      });
      assert.equal(create.status, 201);
      const dup = await fetch(`${server.url}/api/v2.0/projects`, {
        method: 'POST',
        headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ project_name: 'evt2' }),
      });
      assert.equal(dup.status, 409);
      await (await fetch(`${server.url}/api/v2.0/projects/evt2`, { headers: { authorization: ADMIN_AUTH } })).arrayBuffer();
      const member = await fetch(`${server.url}/api/v2.0/projects/evt2/members`, {
        method: 'POST',
        headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ role_id: 2, member_user: { username: 'dev' } }),
      });
      await member.arrayBuffer();
      assert.equal(member.status, 201);
      const ops = take().filter((e) => e.type === 'api.operation');
      // A create names what it made (the id from its Location; the audit log resolves a project id to its name); a refused one, the collection.
      const projectId = (create.headers.get('location') ?? '').split('/').pop();
      const memberId = (member.headers.get('location') ?? '').split('/').pop();
      assert.match(`${projectId}/${memberId}`, /^[0-9]+\/[0-9]+$/);
      assert.deepEqual(
        ops.map((e) => e.type === 'api.operation' && [e.operation, e.resourceType, e.resource, e.project ?? null, e.result, e.status]),
        [
          ['create', 'project', `projects/${projectId}`, projectId, 'success', 201],
          ['create', 'project', 'projects', null, 'failure', 409],
          ['create', 'member', `projects/evt2/members/${memberId}`, 'evt2', 'success', 201],
        ],
      );
      const failed = ops[1];
      assert.match((failed?.type === 'api.operation' && failed.reason) || '', /CONFLICT/);
    });

    it('announces background jobs that end, with their outcome, and not their retries', async () => {
      let attempts = 0;
      server.app.jobs.workers.register('test.events', async (payload) => {
        attempts++;
        if ((payload as { fail?: boolean }).fail) throw new Error('broken on purpose');
      });
      take();
      const ok = await server.app.jobs.queue.enqueue({ kind: 'test.events', payload: {} });
      const bad = await server.app.jobs.queue.enqueue({ kind: 'test.events', payload: { fail: true }, maxAttempts: 1 });
      const deadline = Date.now() + 15_000;
      let finished: DomainEvent[] = [];
      while (Date.now() < deadline) {
        finished = seen.filter((e) => e.type === 'job.finished');
        if (finished.length >= 2) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const byId = new Map(finished.map((e) => [e.type === 'job.finished' && e.jobId, e]));
      assert.deepEqual({ ...(byId.get(ok) as object), at: 0 }, { type: 'job.finished', at: 0, actor: { name: 'system', kind: 'system' }, jobId: ok, kind: 'test.events', status: 'succeeded' });
      const failed = byId.get(bad);
      assert.equal(failed?.type === 'job.finished' && failed.status, 'failed');
      assert.match((failed?.type === 'job.finished' && failed.error) || '', /broken on purpose/);
      assert.equal(attempts, 2);
    });

    it('announces checked logins, failed ones with the name tried, and not cached ones', async () => {
      const fresh = await createUser(server, 'fresh');
      take();
      await (await fetch(`${server.url}/api/v2.0/users/current`, { headers: { authorization: basicAuth('nobody', 'Wrong-pass1') } })).arrayBuffer();
      await (await fetch(`${server.url}/api/v2.0/users/current`, { headers: { authorization: fresh.auth } })).arrayBuffer();
      await (await fetch(`${server.url}/api/v2.0/users/current`, { headers: { authorization: fresh.auth } })).arrayBuffer();
      const logins = take().filter((e) => e.type === 'login');
      assert.deepEqual(
        logins.map((e) => e.type === 'login' && [e.actor.name, e.result]),
        [
          ['nobody', 'failure'],
          ['fresh', 'success'],
        ],
      );
      assert.equal(logins[0]?.actor.address, '127.0.0.1');
    });
  });
}
