/**
 * Cached logins across nodes: every node remembers a successful Basic login for a minute (argon2
 * is slow by design), so a password change, a demotion or a deletion made on one node must reach
 * the caches of the others. Two nodes share one database and data folder; what one node changes,
 * the other stops accepting within a couple of seconds, well before its cache entries expire.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, api, apiJson, basic, startAuthServer, USER_PASSWORD } from '../helpers/harbor-api.ts';
import { closeCluster, waitUntil } from '../helpers/http.ts';
import type { TestServer } from '../helpers/server.ts';

/** Well under the login cache's 60 s: the other node polls the generations every second. */
const PROPAGATION_MS = 5000;

for (const backend of BACKENDS) {
  describe(`cached logins on a cluster of two nodes (${backend})`, () => {
    let first: TestServer;
    let second: TestServer;

    before(async () => {
      first = await startAuthServer(backend);
      second = await first.addNode();
    });
    after(async () => {
      await closeCluster(first, second);
    });

    async function createUser(username: string): Promise<number> {
      await apiJson(first.url, '/users', 201, { method: 'POST', auth: ADMIN, body: { username, password: USER_PASSWORD, email: `${username}@example.com`, realname: username } });
      const { body } = await apiJson<Array<{ user_id: number; username: string }>>(first.url, `/users?q=username=${username}`, 200, { auth: ADMIN });
      const user = body.find((u) => u.username === username);
      assert.ok(user, username);
      return user.user_id;
    }
    const statusOn = async (node: TestServer, auth: string, path = '/users/current') => {
      const res = await api(node.url, path, { auth });
      await res.arrayBuffer();
      return res.status;
    };

    it('a password changed on one node ends the old password on the other', async () => {
      const id = await createUser('carol');
      const old = basic('carol', USER_PASSWORD);
      assert.equal(await statusOn(second, old), 200, 'the second node checked and cached the login');
      assert.equal(await statusOn(second, old), 200);
      await apiJson(first.url, `/users/${id}/password`, 200, { method: 'PUT', auth: ADMIN, body: { new_password: 'Changed-Passw0rd' } });
      assert.equal(await statusOn(first, old), 401, 'the node that changed it forgets at once');
      await waitUntil(async () => (await statusOn(second, old)) === 401, 'the second node to refuse the old password', PROPAGATION_MS);
      assert.equal(await statusOn(second, basic('carol', 'Changed-Passw0rd')), 200);
    });

    it('a system admin demoted on one node loses admin rights on the other', async () => {
      const id = await createUser('dave');
      await apiJson(first.url, `/users/${id}/sysadmin`, 200, { method: 'PUT', auth: ADMIN, body: { sysadmin_flag: true } });
      const dave = basic('dave', USER_PASSWORD);
      assert.equal(await statusOn(second, dave, '/users'), 200, 'an admin lists users (cached as admin on the second node)');
      await apiJson(first.url, `/users/${id}/sysadmin`, 200, { method: 'PUT', auth: ADMIN, body: { sysadmin_flag: false } });
      await waitUntil(async () => (await statusOn(second, dave, '/users')) === 403, 'the second node to see dave demoted', PROPAGATION_MS);
    });

    it('a user deleted on one node cannot log in on the other', async () => {
      const id = await createUser('erin');
      const erin = basic('erin', USER_PASSWORD);
      assert.equal(await statusOn(second, erin), 200);
      await apiJson(first.url, `/users/${id}`, 200, { method: 'DELETE', auth: ADMIN });
      await waitUntil(async () => (await statusOn(second, erin)) === 401, 'the second node to refuse the deleted user', PROPAGATION_MS);
    });
  });
}
