/**
 * The permission matrix, walked end to end over HTTP: for every caller (system admin, each
 * project role, a robot holding the operation's permission and one holding everything else,
 * anonymous on a public and a private project, a user of another project) and every registry and
 * management-API operation, the expected allow or deny. Expectations are written out per
 * operation from Harbor's role table (harbor.md §2.4), not computed from our own matrix.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { projectPermissions } from '../../src/iam/rbac.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { addMember, createProject, createUser, registryToken, type TestUser } from '../helpers/iam.ts';
import { imageManifest, putManifest, sha256 } from '../helpers/oci.ts';
import { ADMIN_AUTH, basicAuth, startTestServer, type TestServer } from '../helpers/server.ts';

const ROLES = ['sysadmin', 'projectAdmin', 'maintainer', 'developer', 'guest', 'limitedGuest', 'outsider', 'anonymous', 'robotWith', 'robotWithout'] as const;
type Role = (typeof ROLES)[number];
const MEMBER_ROLE_IDS: Partial<Record<Role, number>> = { projectAdmin: 1, developer: 2, guest: 3, maintainer: 4, limitedGuest: 5 };

const LOGGED_IN: readonly Role[] = ROLES.filter((r) => r !== 'anonymous');
const ALL_MEMBERS: readonly Role[] = ['sysadmin', 'projectAdmin', 'maintainer', 'developer', 'guest', 'limitedGuest', 'robotWith'];
const MEMBERS_NO_LG: readonly Role[] = ['sysadmin', 'projectAdmin', 'maintainer', 'developer', 'guest', 'robotWith'];
const WRITERS: readonly Role[] = ['sysadmin', 'projectAdmin', 'maintainer', 'developer', 'robotWith'];
const MAINTAINERS: readonly Role[] = ['sysadmin', 'projectAdmin', 'maintainer', 'robotWith'];
const ADMINS: readonly Role[] = ['sysadmin', 'projectAdmin', 'robotWith'];

interface Ctx {
  readonly server: TestServer;
  readonly role: Role;
  /** Authorization header for the caller (undefined for anonymous). */
  readonly auth: string | undefined;
  /** A digest of a manifest this role may delete (pushed for it). */
  readonly ownDigest: string;
  readonly privateId: number;
  readonly privateQuotaId: number;
}

interface Operation {
  readonly name: string;
  /** What a robot must hold to be allowed: project permissions in `priv`, or system ones. */
  readonly permission: { kind: 'project' | 'system'; resource: string; action: string }[];
  readonly allowed: readonly Role[];
  /** Statuses that show the caller got past authorisation. */
  readonly ok: readonly number[];
  readonly call: (ctx: Ctx) => Promise<Response>;
}

const v2 = async (ctx: Ctx, method: string, path: string, scopes: string[]): Promise<Response> => {
  // Clients fetch a token for the scope, then use it (anonymous callers too).
  const token = await registryToken(ctx.server, scopes, ctx.auth);
  return fetch(`${ctx.server.url}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
};

const api = (ctx: Ctx, method: string, path: string, body?: unknown): Promise<Response> =>
  fetch(`${ctx.server.url}/api/v2.0${path}`, {
    method,
    headers: { ...(ctx.auth ? { authorization: ctx.auth } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });

const perm = (resource: string, action: string, kind: 'project' | 'system' = 'project') => ({ kind, resource, action });

const OPERATIONS: readonly Operation[] = [
  // ── registry (/v2, through tokens) ──
  { name: 'pull a manifest', permission: [perm('repository', 'pull')], allowed: ALL_MEMBERS, ok: [200], call: (c) => v2(c, 'GET', '/v2/priv/app/manifests/v1', ['repository:priv/app:pull']) },
  { name: 'start a blob upload (push)', permission: [perm('repository', 'pull'), perm('repository', 'push')], allowed: WRITERS, ok: [202], call: (c) => v2(c, 'POST', '/v2/priv/app/blobs/uploads/', ['repository:priv/app:pull,push']) },
  {
    name: 'delete a manifest',
    permission: [perm('repository', 'delete')],
    allowed: MAINTAINERS,
    ok: [202],
    call: (c) => v2(c, 'DELETE', `/v2/priv/app/manifests/${c.ownDigest}`, ['repository:priv/app:delete']),
  },
  { name: 'list the catalog', permission: [], allowed: LOGGED_IN, ok: [200], call: (c) => v2(c, 'GET', '/v2/_catalog', ['registry:catalog:*']) },
  { name: 'pull from a public project', permission: [], allowed: ROLES, ok: [200], call: (c) => v2(c, 'GET', '/v2/pub/app/manifests/v1', ['repository:pub/app:pull']) },

  // ── projects ──
  { name: 'get the project', permission: [perm('project', 'read')], allowed: ALL_MEMBERS, ok: [200], call: (c) => api(c, 'GET', '/projects/priv') },
  { name: 'get the project summary', permission: [perm('project', 'read')], allowed: ALL_MEMBERS, ok: [200], call: (c) => api(c, 'GET', '/projects/priv/summary') },
  { name: 'update the project', permission: [perm('project', 'update')], allowed: ADMINS, ok: [200], call: (c) => api(c, 'PUT', '/projects/priv', { metadata: { auto_scan: 'false' } }) },
  { name: 'delete the project (refused: it holds repositories)', permission: [perm('project', 'delete')], allowed: ADMINS, ok: [412], call: (c) => api(c, 'DELETE', '/projects/priv') },
  { name: 'get a public project', permission: [], allowed: ROLES, ok: [200], call: (c) => api(c, 'GET', '/projects/pub') },
  { name: 'read project metadata', permission: [perm('metadata', 'read')], allowed: MAINTAINERS, ok: [200], call: (c) => api(c, 'GET', '/projects/priv/metadatas/') },
  { name: 'list members', permission: [perm('member', 'list')], allowed: MEMBERS_NO_LG, ok: [200], call: (c) => api(c, 'GET', '/projects/priv/members') },
  {
    name: 'add a member',
    permission: [perm('member', 'create')],
    allowed: ADMINS,
    ok: [201, 409],
    call: (c) => api(c, 'POST', '/projects/priv/members', { role_id: 3, member_user: { username: 'spare' } }),
  },
  // ── repositories, artifacts, tags ──
  { name: 'list repositories', permission: [perm('repository', 'list')], allowed: ALL_MEMBERS, ok: [200], call: (c) => api(c, 'GET', '/projects/priv/repositories') },
  { name: 'list repositories of a public project', permission: [], allowed: ROLES, ok: [200], call: (c) => api(c, 'GET', '/projects/pub/repositories') },
  { name: 'update a repository', permission: [perm('repository', 'update')], allowed: WRITERS, ok: [200], call: (c) => api(c, 'PUT', '/projects/priv/repositories/app', { description: `by ${c.role}` }) },
  { name: 'delete a repository', permission: [perm('repository', 'delete')], allowed: MAINTAINERS, ok: [200], call: (c) => api(c, 'DELETE', `/projects/priv/repositories/del-${c.role.toLowerCase()}`) },
  { name: 'list artifacts', permission: [perm('artifact', 'list')], allowed: ALL_MEMBERS, ok: [200], call: (c) => api(c, 'GET', '/projects/priv/repositories/app/artifacts') },
  { name: 'get an artifact', permission: [perm('artifact', 'read')], allowed: ALL_MEMBERS, ok: [200], call: (c) => api(c, 'GET', '/projects/priv/repositories/app/artifacts/v1') },
  {
    name: 'delete an artifact',
    permission: [perm('artifact', 'delete')],
    allowed: MAINTAINERS,
    ok: [200],
    call: (c) => api(c, 'DELETE', `/projects/priv/repositories/art/artifacts/${c.ownDigest}`),
  },
  { name: 'list tags', permission: [perm('tag', 'list')], allowed: ALL_MEMBERS, ok: [200], call: (c) => api(c, 'GET', '/projects/priv/repositories/app/artifacts/v1/tags') },
  { name: 'create a tag', permission: [perm('tag', 'create')], allowed: WRITERS, ok: [201], call: (c) => api(c, 'POST', '/projects/priv/repositories/app/artifacts/v1/tags', { name: `t-${c.role.toLowerCase()}` }) },
  { name: 'delete a tag', permission: [perm('tag', 'delete')], allowed: MAINTAINERS, ok: [200], call: (c) => api(c, 'DELETE', `/projects/priv/repositories/app/artifacts/v1/tags/d-${c.role.toLowerCase()}`) },
  // ── robots and quotas ──
  { name: 'list project robots', permission: [perm('robot', 'list')], allowed: MEMBERS_NO_LG, ok: [200], call: (c) => api(c, 'GET', `/robots?q=Level=project,ProjectID=${c.privateId}`) },
  {
    name: 'create a project robot',
    permission: [perm('robot', 'create'), perm('repository', 'pull')],
    allowed: ADMINS,
    ok: [201],
    call: (c) =>
      api(c, 'POST', '/robots', {
        name: `by-${c.role.toLowerCase()}`,
        level: 'project',
        duration: -1,
        permissions: [{ kind: 'project', namespace: 'priv', access: [{ resource: 'repository', action: 'pull' }] }],
      }),
  },
  { name: "read the project's quota", permission: [perm('quota', 'read')], allowed: ALL_MEMBERS, ok: [200], call: (c) => api(c, 'GET', `/quotas/${c.privateQuotaId}`) },
  {
    name: 'change a quota (system)',
    permission: [perm('quota', 'update', 'system')],
    allowed: ['sysadmin', 'robotWith'],
    ok: [200],
    call: (c) => api(c, 'PUT', `/quotas/${c.privateQuotaId}`, { hard: { storage: -1 } }),
  },
  // ── tag immutability and retention ──
  { name: 'list immutable-tag rules', permission: [perm('immutable-tag', 'list')], allowed: MAINTAINERS, ok: [200], call: (c) => api(c, 'GET', '/projects/priv/immutabletagrules') },
  {
    name: 'create an immutable-tag rule',
    permission: [perm('immutable-tag', 'create')],
    allowed: MAINTAINERS,
    ok: [201, 409],
    call: (c) =>
      api(c, 'POST', '/projects/priv/immutabletagrules', {
        disabled: false,
        action: 'immutable',
        template: 'immutable_template',
        tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: `frozen-${c.role.toLowerCase()}` }],
        scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
      }),
  },
  // ── job service (system) ──
  { name: 'list job queues', permission: [perm('jobservice-monitor', 'list', 'system')], allowed: ['sysadmin', 'robotWith'], ok: [200], call: (c) => api(c, 'GET', '/jobservice/queues') },
  // ── users (system) ──
  { name: 'list users', permission: [perm('user', 'list', 'system')], allowed: ['sysadmin', 'robotWith'], ok: [200], call: (c) => api(c, 'GET', '/users') },
  { name: 'read the current user', permission: [], allowed: ['sysadmin', 'projectAdmin', 'maintainer', 'developer', 'guest', 'limitedGuest', 'outsider'], ok: [200], call: (c) => api(c, 'GET', '/users/current') },
];

/** Everything a robot may hold, minus what the operation needs: the strongest "without". */
function everythingBut(needed: Operation['permission']): Array<{ resource: string; action: string }> {
  const held = projectPermissions().filter((p) => !needed.some((n) => n.kind === 'project' && n.resource === p.resource && n.action === p.action));
  // Push without pull is not a grant robots can hold.
  const pulls = held.some((p) => p.resource === 'repository' && p.action === 'pull');
  return pulls ? held : held.filter((p) => !(p.resource === 'repository' && p.action === 'push'));
}

for (const backend of BACKENDS) {
  describe(`permission matrix (${backend})`, () => {
    let server: TestServer;
    const users = new Map<Role, TestUser>();
    let privateId: number;
    let privateQuotaId: number;

    const adminPut = async (repo: string, tag: string) => {
      const image = await imageManifest(server.url, repo, { headers: { authorization: ADMIN_AUTH } });
      const res = await putManifest(server.url, repo, tag, image.bytes, undefined, { authorization: ADMIN_AUTH });
      assert.equal(res.status, 201, await res.text());
      return sha256(image.bytes);
    };

    async function robot(name: string, permissions: Operation['permission'] | Array<{ resource: string; action: string }>, system: boolean): Promise<string> {
      if (permissions.length === 0) permissions = [{ resource: 'project', action: 'read' }];
      const project = permissions.filter((p) => !('kind' in p) || p.kind === 'project').map((p) => ({ resource: p.resource, action: p.action }));
      const sys = permissions.filter((p) => 'kind' in p && p.kind === 'system').map((p) => ({ resource: p.resource, action: p.action }));
      const body = {
        name,
        level: system || sys.length > 0 ? 'system' : 'project',
        duration: -1,
        permissions: [
          ...(project.length > 0 ? [{ kind: 'project', namespace: 'priv', access: project }] : []),
          ...(sys.length > 0 ? [{ kind: 'system', namespace: '/', access: sys }] : []),
        ],
      };
      const res = await fetch(`${server.url}/api/v2.0/robots`, { method: 'POST', headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const created = (await res.json()) as { name: string; secret: string };
      assert.equal(res.status, 201, JSON.stringify(created));
      return basicAuth(created.name, created.secret);
    }

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
      privateId = await createProject(server, 'priv');
      await createProject(server, 'pub', { public: true });
      const elsewhere = await createProject(server, 'elsewhere');
      users.set('sysadmin', await createUser(server, 'root2', { sysadmin: true }));
      for (const role of ROLES) {
        const roleId = MEMBER_ROLE_IDS[role];
        if (roleId !== undefined) {
          const user = await createUser(server, role.toLowerCase());
          await addMember(server, privateId, user, roleId);
          users.set(role, user);
        }
      }
      const outsider = await createUser(server, 'outsider');
      await addMember(server, elsewhere, outsider, 1);
      users.set('outsider', outsider);
      await createUser(server, 'spare');
      privateQuotaId = (await server.app.database.db.selectFrom('quotas').select('id').where('project_id', '=', privateId).executeTakeFirstOrThrow()).id;
      await adminPut('priv/app', 'v1');
      await adminPut('pub/app', 'v1');
    });
    after(() => server.close());

    for (const op of OPERATIONS) {
      it(`${op.name}: allowed for ${op.allowed.join(', ')}; refused for the rest`, async () => {
        const outcome: Record<string, string> = {};
        const expected: Record<string, string> = {};
        for (const role of ROLES) {
          // Per-role targets, so that one caller's successful delete does not change the next one's answer.
          let ownDigest = '';
          if (op.name === 'delete an artifact') ownDigest = await adminPut('priv/art', `own-${role.toLowerCase()}`);
          if (op.name === 'delete a manifest') ownDigest = await adminPut('priv/app', `own-${role.toLowerCase()}`);
          if (op.name === 'delete a repository') await adminPut(`priv/del-${role.toLowerCase()}`, 'v1');
          if (op.name === 'delete a tag') {
            const tagged = await fetch(`${server.url}/api/v2.0/projects/priv/repositories/app/artifacts/v1/tags`, {
              method: 'POST',
              headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' },
              body: JSON.stringify({ name: `d-${role.toLowerCase()}` }),
            });
            assert.equal(tagged.status, 201, await tagged.text());
          }
          let auth: string | undefined;
          if (role === 'robotWith') auth = await robot(`w${OPERATIONS.indexOf(op)}`, op.permission, op.permission.some((p) => p.kind === 'system'));
          else if (role === 'robotWithout') auth = await robot(`wo${OPERATIONS.indexOf(op)}`, everythingBut(op.permission), false);
          else if (role !== 'anonymous') auth = (users.get(role) as TestUser).auth;
          const res = await op.call({ server, role, auth, ownDigest, privateId, privateQuotaId });
          const text = await res.text();
          const passed = op.ok.includes(res.status);
          const refused = [401, 403, 404].includes(res.status) && /UNAUTHORIZED|DENIED|FORBIDDEN|NOT_FOUND|NAME_UNKNOWN/.test(text);
          assert.ok(passed || refused, `${role}: ${op.name} answered ${res.status} ${text}`);
          outcome[role] = passed ? 'allow' : 'deny';
          expected[role] = op.allowed.includes(role) ? 'allow' : 'deny';
        }
        assert.deepEqual(outcome, expected);
      });
    }
  });
}
