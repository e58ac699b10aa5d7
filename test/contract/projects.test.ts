/**
 * ProjectService (src/projects) against every database backend: project-name rules, creation
 * races, visibility of listings, what a project holds (repository names by prefix), deletion,
 * members, metadata and quotas give the same answers on SQLite and PostgreSQL.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ProjectRef } from '../../src/iam/access.ts';
import type { Subject } from '../../src/iam/rbac.ts';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { ApiError } from '../../src/platform/http/api.ts';
import { checkProjectName, type ProjectActor, ProjectService } from '../../src/projects/service.ts';
import type { ProjectFilter, Visibility } from '../../src/projects/store.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';

const DEFAULT_QUOTA = 1_000_000;

type User = Extract<Subject, { kind: 'user' }>;

async function rejects(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('project names', () => {
  const valid = ['a', '0', 'library', 'team-a', 'team_a', 'team.a', 'a1-b2.c3_d4', '123', 'x'.repeat(255)];
  const invalid = ['', 'A', 'Team', 'team a', '-team', 'team-', '_a', 'a_', '.a', 'a.', 'a--b', 'a__b', 'a..b', 'a/b', 'a:b', 'é', 'x'.repeat(256), 'a\u0000'];
  for (const name of valid) it(`accepts ${JSON.stringify(name.length > 20 ? `${name.slice(0, 5)}…(${name.length})` : name)}`, () => checkProjectName(name));
  for (const name of invalid) {
    it(`refuses ${JSON.stringify(name.length > 20 ? `${name.slice(0, 5)}…(${name.length})` : name)}`, () => {
      assert.throws(
        () => checkProjectName(name),
        (err: unknown) => err instanceof ApiError && err.code === 'BAD_REQUEST',
      );
    });
  }
});

for (const backend of BACKENDS) {
  describe(`ProjectService on ${backend}`, () => {
    let testDatabase: TestDatabase;
    let dataDir: string;
    let handle: DatabaseHandle;
    let service: ProjectService;
    let now = 1_700_000_000_000;
    let forgotten = 0;
    let admin: User;
    let alice: User;
    let bob: User;
    const robot: Subject = { kind: 'robot', id: 1, name: 'robot$ci', access: [{ kind: 'project', namespace: 'robot-seen', resource: 'repository', action: 'pull' }] };
    const as = (subject: User | typeof robot, mayUpdateQuota = false): ProjectActor => ({ subject: subject as ProjectActor['subject'], mayUpdateQuota });

    async function insertUser(username: string, sysadmin = false): Promise<User> {
      const row = await handle.db
        .insertInto('users')
        .values({ username, email: null, realname: username, comment: '', password_hash: 'x', sysadmin: sysadmin ? 1 : 0, created_at: now, updated_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      return { kind: 'user', id: Number(row.id), name: username, sysadmin };
    }

    async function insertRepository(name: string): Promise<void> {
      await handle.db.insertInto('repositories').values({ name, created_at: now, updated_at: now, description: null }).execute();
    }

    async function names(visibility: Visibility, filter: Omit<ProjectFilter, 'visibility'> = {}): Promise<string[]> {
      const { items } = await service.list({ filter: { visibility, ...filter }, sort: [{ key: 'name', desc: false }], page: { offset: 0, limit: 100 }, viewerUserId: undefined });
      return items.map((p) => p.name);
    }

    async function project(name: string): Promise<ProjectRef> {
      const found = await service.findByName(name);
      assert.ok(found, name);
      return found;
    }

    before(async () => {
      testDatabase = await createTestDatabase(backend);
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-projects-'));
      handle = createDatabase({ url: testDatabase.url, sqliteFile: path.join(dataDir, 'berth.db') });
      await handle.migrate();
      service = new ProjectService({ db: handle.db, defaultStorageBytes: DEFAULT_QUOTA, now: () => now, onCredentialsChanged: () => forgotten++ });
      admin = await insertUser('admin', true);
      alice = await insertUser('alice');
      bob = await insertUser('bob');
    });

    after(async () => {
      await handle?.close();
      await testDatabase?.drop();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    it('ensureLibrary creates public library once, owned by admin, with admin as Project Admin and the default quota', async () => {
      await service.ensureLibrary(admin.id);
      await service.ensureLibrary(admin.id);
      const library = await project('library');
      assert.equal(library.public, true);
      assert.equal(library.createdAt, now);
      const view = await service.get(library, admin.id);
      assert.equal(view.ownerId, admin.id);
      assert.equal(view.ownerName, 'admin');
      assert.deepEqual(view.roles, [1]);
      assert.deepEqual(view.metadata, { public: 'true' });
      assert.equal((await service.quotas.ofProject(library.id))?.hard, DEFAULT_QUOTA);
      assert.equal((await handle.db.selectFrom('projects').select('id').execute()).length, 1);
    });

    it('find takes ids (numbers or digit strings) and names; findByName never reads digits as an id', async () => {
      const library = await project('library');
      assert.equal((await service.find(library.id))?.name, 'library');
      assert.equal((await service.find(String(library.id)))?.name, 'library');
      assert.equal((await service.find('library'))?.id, library.id);
      for (const missing of ['0', '99999', '99999999999999999999', 'nope', '']) assert.equal(await service.find(missing), undefined, missing);
      assert.equal(await service.findByName(String(library.id)), undefined);
      await service.create({ project_name: '2024' }, as(alice));
      const numeric = await service.findByName('2024');
      assert.ok(numeric);
      assert.notEqual(numeric.id, 2024);
      assert.equal(await service.find(numeric.id).then((p) => p?.name), '2024');
    });

    it('create: the creating user becomes Project Admin, the project is private by default with the default quota', async () => {
      now += 1000;
      const created = await service.create({ project_name: 'alpha' }, as(alice));
      assert.equal(created.public, false);
      assert.equal(created.createdAt, now);
      assert.deepEqual(await service.rolesOf(alice.id, created.id), [1]);
      assert.deepEqual(await service.rolesOf(bob.id, created.id), []);
      const view = await service.get(created, alice.id);
      assert.equal(view.ownerName, 'alice');
      assert.deepEqual(view.metadata, { public: 'false' });
      assert.equal((await service.quotas.ofProject(created.id))?.hard, DEFAULT_QUOTA);
    });

    it('create: public from the flag or metadata (strings), which must agree; metadata keys validated', async () => {
      assert.equal((await service.create({ project_name: 'pub-flag', public: true }, as(alice))).public, true);
      const viaMeta = await service.create({ project_name: 'pub-meta', metadata: { public: 'true', auto_scan: 'true', severity: 'High' } }, as(alice));
      assert.equal(viaMeta.public, true);
      assert.deepEqual((await service.get(viaMeta, undefined)).metadata, { public: 'true', auto_scan: 'true', severity: 'high' });
      await rejects(service.create({ project_name: 'bad1', public: false, metadata: { public: 'true' } }, as(alice)), 'BAD_REQUEST', /disagree/);
      await rejects(service.create({ project_name: 'bad2', metadata: { public: 'yes' } }, as(alice)), 'BAD_REQUEST', /public/);
      await rejects(service.create({ project_name: 'bad3', metadata: { colour: 'red' } }, as(alice)), 'BAD_REQUEST', /unknown metadata key "colour"/);
      await rejects(service.create({ project_name: 'bad4', metadata: { auto_scan: true } }, as(alice)), 'BAD_REQUEST', /string/);
      await rejects(service.create({ project_name: 'bad5', metadata: { severity: 'extreme' } }, as(alice)), 'BAD_REQUEST', /severity/);
      await rejects(service.create({ project_name: 'bad6', metadata: { proxy_speed_kb: '10' } }, as(alice)), 'BAD_REQUEST', /proxy-cache/);
      await rejects(service.create({ project_name: 'bad7', metadata: { retention_id: '4' } }, as(alice)), 'BAD_REQUEST', /retention/);
      await rejects(service.create({ project_name: 'bad8', registry_id: 3 }, as(alice)), 'BAD_REQUEST', /proxy-cache/);
      await rejects(service.create({ project_name: 'bad9', cve_allowlist: { items: [{ cve_id: 'CVE-1' }] } }, as(alice)), 'BAD_REQUEST', /allowlist/);
      await rejects(service.create({ project_name: 'Bad10' }, as(alice)), 'BAD_REQUEST', /lowercase/);
      await rejects(service.create({}, as(alice)), 'BAD_REQUEST', /project_name/);
      assert.ok(await service.create({ project_name: 'ok-empty', registry_id: null, cve_allowlist: { items: [] }, metadata: { retention_id: '' } }, as(alice)));
      const stored = await handle.db.selectFrom('projects').select('name').where('name', 'like', 'bad%').execute();
      assert.deepEqual(stored, [], 'refused creations leave nothing behind');
    });

    it('create: storage_limit is for quota admins; 0 or absent means the default; -1 or positive only', async () => {
      const admins = await service.create({ project_name: 'limited', storage_limit: 5000 }, as(admin, true));
      assert.equal((await service.quotas.ofProject(admins.id))?.hard, 5000);
      const unlimited = await service.create({ project_name: 'unlimited', storage_limit: -1 }, as(admin, true));
      assert.equal((await service.quotas.ofProject(unlimited.id))?.hard, -1);
      const zero = await service.create({ project_name: 'zero-limit', storage_limit: 0 }, as(alice));
      assert.equal((await service.quotas.ofProject(zero.id))?.hard, DEFAULT_QUOTA);
      const same = await service.create({ project_name: 'default-limit', storage_limit: DEFAULT_QUOTA }, as(alice));
      assert.equal((await service.quotas.ofProject(same.id))?.hard, DEFAULT_QUOTA);
      await rejects(service.create({ project_name: 'users-limit', storage_limit: 5000 }, as(alice)), 'FORBIDDEN', /system admins/);
      await rejects(service.create({ project_name: 'neg-limit', storage_limit: -2 }, as(admin, true)), 'BAD_REQUEST', /-1/);
      assert.equal(await service.findByName('users-limit'), undefined);
      assert.equal(await service.findByName('neg-limit'), undefined);
    });

    it('create by a robot: owned by the first system admin, no member added', async () => {
      const created = await service.create({ project_name: 'robot-made' }, as(robot));
      const view = await service.get(created, undefined);
      assert.equal(view.ownerId, admin.id);
      const { total } = await service.members.list(created, undefined, { offset: 0, limit: 10 });
      assert.equal(total, 0);
    });

    it('a duplicate name is a 409, also when 12 creations race', async () => {
      await rejects(service.create({ project_name: 'alpha' }, as(bob)), 'CONFLICT', /already exists/);
      const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => service.create({ project_name: 'racer' }, as(i % 2 ? alice : bob))));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as ApiError).code, 'CONFLICT');
      const racer = await project('racer');
      const rows = await handle.db.selectFrom('project_members').select('user_id').where('project_id', '=', racer.id).execute();
      assert.equal(rows.length, 1, 'only the winner became a member');
      assert.equal((await handle.db.selectFrom('quotas').select('id').where('project_id', '=', racer.id).execute()).length, 1);
    });

    it('listings: anonymous sees public projects, a user also those it is a member of, a robot those it names, admins all', async () => {
      await service.create({ project_name: 'robot-seen' }, as(bob));
      const all = await names({ kind: 'all' });
      const publicOnes = await names({ kind: 'public' });
      assert.ok(all.includes('alpha') && all.includes('robot-seen'));
      assert.deepEqual(publicOnes, ['library', 'pub-flag', 'pub-meta']);
      const alices = await names({ kind: 'member', userId: alice.id });
      assert.ok(alices.includes('alpha') && alices.includes('library') && !alices.includes('robot-seen'));
      const bobs = await names({ kind: 'member', userId: bob.id });
      assert.ok(bobs.includes('robot-seen') && !bobs.includes('alpha'));
      assert.deepEqual(await names({ kind: 'names', names: ['robot-seen'] }), ['library', 'pub-flag', 'pub-meta', 'robot-seen']);
      assert.deepEqual(await names({ kind: 'names', names: [] }), publicOnes);
      assert.deepEqual(await names({ kind: 'member', userId: alice.id }, { public: false }), alices.filter((n) => !publicOnes.includes(n)));
      assert.deepEqual(await names({ kind: 'public' }, { public: false }), []);
    });

    it('listings filter by name (exact, fuzzy with LIKE wildcards literal, any of), owner, ids; sort and page', async () => {
      assert.deepEqual(await names({ kind: 'all' }, { name: [{ kind: 'exact', value: 'alpha' }] }), ['alpha']);
      assert.deepEqual(await names({ kind: 'all' }, { name: [{ kind: 'fuzzy', value: 'limit' }] }), ['default-limit', 'limited', 'unlimited', 'zero-limit']);
      assert.deepEqual(await names({ kind: 'all' }, { name: [{ kind: 'fuzzy', value: '_' }] }), [], '_ is not a wildcard');
      assert.deepEqual(await names({ kind: 'all' }, { name: [{ kind: 'fuzzy', value: '%' }] }), [], '% is not a wildcard');
      assert.deepEqual(await names({ kind: 'all' }, { name: [{ kind: 'any', values: ['alpha', 'racer', 'nope'] }] }), ['alpha', 'racer']);
      assert.deepEqual(await names({ kind: 'all' }, { name: [{ kind: 'fuzzy', value: 'pub' }, { kind: 'exact', value: 'pub-meta' }] }), ['pub-meta']);
      assert.deepEqual(await names({ kind: 'all' }, { owner: 'bob', name: [{ kind: 'fuzzy', value: 'seen' }] }), ['robot-seen']);
      assert.deepEqual(await names({ kind: 'all' }, { owner: 'nobody' }), []);
      const alpha = await project('alpha');
      assert.deepEqual(await names({ kind: 'all' }, { ids: [alpha.id] }), ['alpha']);
      assert.deepEqual(await names({ kind: 'all' }, { ids: [] }), []);

      const everything = await service.list({ filter: { visibility: { kind: 'all' } }, sort: [], page: { offset: 0, limit: 100 }, viewerUserId: alice.id });
      const byId = everything.items.map((p) => p.id);
      assert.deepEqual(byId, [...byId].sort((a, b) => a - b), 'default order is by id');
      assert.deepEqual(everything.items.find((p) => p.name === 'alpha')?.roles, [1], "the viewer's roles come along");
      assert.deepEqual(everything.items.find((p) => p.name === 'robot-seen')?.roles, []);
      const desc = await service.list({ filter: { visibility: { kind: 'all' } }, sort: [{ key: 'name', desc: true }], page: { offset: 0, limit: 3 }, viewerUserId: undefined });
      const sortedNames = everything.items.map((p) => p.name).sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
      assert.deepEqual(
        desc.items.map((p) => p.name),
        sortedNames.slice(0, 3),
      );
      assert.equal(desc.total, everything.total);
      const page2 = await service.list({ filter: { visibility: { kind: 'all' } }, sort: [{ key: 'name', desc: true }], page: { offset: 3, limit: 3 }, viewerUserId: undefined });
      assert.deepEqual(
        page2.items.map((p) => p.name),
        sortedNames.slice(3, 6),
      );
    });

    it("a project holds the repositories named '<project>/…', not those of look-alike names", async () => {
      for (const name of ['team'].concat(['team-a', 'team.b', 'team_c', 'team0', 'teams'])) await service.create({ project_name: name }, as(alice));
      for (const repo of ['team-a/x', 'team.b/x', 'team_c/x', 'team0/x', 'teams/x', 'tea/x']) await insertRepository(repo);
      const team = await project('team');
      assert.equal((await service.get(team, undefined)).repoCount, 0);
      assert.deepEqual(await service.deletable(team), { deletable: true, message: '' });
      await insertRepository('team/app');
      await insertRepository('team/deep/path/app');
      assert.equal((await service.get(team, undefined)).repoCount, 2);
      const listed = await service.list({ filter: { visibility: { kind: 'all' }, name: [{ kind: 'fuzzy', value: 'team' }] }, sort: [{ key: 'name', desc: false }], page: { offset: 0, limit: 10 }, viewerUserId: undefined });
      assert.deepEqual(
        listed.items.map((p) => [p.name, p.repoCount]),
        [
          ['team', 2],
          ['team-a', 1],
          ['team.b', 1],
          ['team0', 1],
          ['team_c', 1],
          ['teams', 1],
        ],
      );
      const deletable = await service.deletable(team);
      assert.equal(deletable.deletable, false);
      assert.match(deletable.message, /2 repositories/);
      assert.equal((await service.summary(team, { members: false, quota: false })).repoCount, 2);
    });

    it('delete is refused (412) while the project holds repositories and leaves everything; otherwise cascades', async () => {
      const team = await project('team');
      const before = forgotten;
      await rejects(service.delete(team), 'PRECONDITION', /repositories/);
      assert.ok(await service.findByName('team'));
      assert.equal(forgotten, before);
      await handle.db.deleteFrom('repositories').where('name', 'like', 'team/%').execute();
      await service.members.add(team, { role_id: 2, member_user: { username: 'bob' } });
      await service.delete(team);
      assert.equal(await service.findByName('team'), undefined);
      assert.equal(forgotten, before + 1, 'cached logins are dropped (robots went with the project)');
      for (const table of ['project_members', 'quotas'] as const) {
        const rows = await handle.db.selectFrom(table).select('project_id').where('project_id', '=', team.id).execute();
        assert.deepEqual(rows, [], table);
      }
      await rejects(service.delete(team), 'NOT_FOUND');
      assert.ok(await service.findByName('team-a'), 'look-alikes are untouched');
    });

    it('update: public flag and metadata merge; renames, retention_id changes and storage_limit by users refused', async () => {
      const alpha = await project('alpha');
      now += 1000;
      await service.update(alpha, { public: true, metadata: { auto_scan: 'true' } }, as(alice));
      await service.update(alpha, { metadata: { severity: 'critical' } }, as(alice));
      let view = await service.get(alpha, undefined);
      assert.deepEqual(view.metadata, { public: 'true', auto_scan: 'true', severity: 'critical' });
      assert.equal(view.updatedAt, now);
      await service.update(alpha, { metadata: { public: 'false' }, project_name: 'alpha' }, as(alice));
      assert.equal((await service.find(alpha.id))?.public, false);
      await rejects(service.update(alpha, { project_name: 'beta' }, as(alice)), 'BAD_REQUEST', /renamed/);
      await rejects(service.update(alpha, { metadata: { nope: 'x' } }, as(alice)), 'BAD_REQUEST', /nope/);
      await rejects(service.update(alpha, { metadata: { retention_id: '7' } }, as(alice)), 'BAD_REQUEST', /retention_id/);
      await rejects(service.update(alpha, { storage_limit: 42 }, as(alice)), 'FORBIDDEN');
      await service.update(alpha, { storage_limit: DEFAULT_QUOTA }, as(alice));
      await service.setSystemMetadata(alpha, 'retention_id', '7');
      await service.update(alpha, { metadata: { retention_id: '7', auto_scan: 'false' } }, as(alice));
      await service.update(alpha, { storage_limit: 42 }, as(admin, true));
      assert.equal((await service.quotas.ofProject(alpha.id))?.hard, 42);
      await rejects(service.update(alpha, { storage_limit: 0 }, as(admin, true)), 'BAD_REQUEST');
      view = await service.get(alpha, undefined);
      assert.deepEqual(view.metadata, { public: 'false', auto_scan: 'false', retention_id: '7', severity: 'critical' });
    });

    it('metadata: add (409 when set), update one key, delete (public stays), values validated', async () => {
      const alpha = await project('alpha');
      await service.addMetadata(alpha, { prevent_vul: 'true', enable_content_trust: 'false' });
      await rejects(service.addMetadata(alpha, { prevent_vul: 'false' }), 'CONFLICT');
      await rejects(service.addMetadata(alpha, { public: 'true' }), 'CONFLICT', /already set/);
      await rejects(service.addMetadata(alpha, {}), 'BAD_REQUEST');
      await rejects(service.addMetadata(alpha, { auto_sbom_generation: 'maybe' }), 'BAD_REQUEST');
      await service.updateMetadata(alpha, 'prevent_vul', { prevent_vul: 'false' });
      await service.updateMetadata(alpha, 'public', { public: 'true' });
      assert.equal((await service.find(alpha.id))?.public, true);
      await rejects(service.updateMetadata(alpha, 'prevent_vul', { auto_scan: 'true' }), 'BAD_REQUEST', /prevent_vul/);
      await rejects(service.updateMetadata(alpha, 'prevent_vul', { prevent_vul: 'false', auto_scan: 'true' }), 'BAD_REQUEST');
      await rejects(service.updateMetadata(alpha, 'auto_sbom_generation', { auto_sbom_generation: 'true' }), 'NOT_FOUND');
      await rejects(service.updateMetadata(alpha, 'colour', { colour: 'red' }), 'BAD_REQUEST', /colour/);
      await service.deleteMetadata(alpha, 'prevent_vul');
      await service.deleteMetadata(alpha, 'prevent_vul');
      await rejects(service.deleteMetadata(alpha, 'public'), 'BAD_REQUEST');
      await rejects(service.deleteMetadata(alpha, 'colour'), 'BAD_REQUEST');
      const metadata = await service.metadata(alpha);
      assert.equal(metadata.public, 'true');
      assert.equal(metadata.prevent_vul, undefined);
      assert.equal(metadata.enable_content_trust, 'false');
    });

    it('metadata changes racing one another all land: none is lost to a stale read, and of two adds of one key exactly one wins', async () => {
      const alpha = await project('alpha');
      const before = await service.metadata(alpha);
      // Different keys at once through every writer: the admin's PUT, POST and PUT of one key, and retention's system key.
      await Promise.all([
        service.update(alpha, { metadata: { severity: 'high' } }, as(alice)),
        service.update(alpha, { metadata: { auto_scan: 'true' } }, as(alice)),
        service.addMetadata(alpha, { auto_sbom_generation: 'true' }),
        service.updateMetadata(alpha, 'enable_content_trust', { enable_content_trust: 'true' }),
        service.setSystemMetadata(alpha, 'retention_id', '99'),
        ...Array.from({ length: 8 }, (_, i) => service.setSystemMetadata(alpha, `system_key_${i}`, String(i))),
      ]);
      const after = await service.metadata(alpha);
      assert.equal(after.severity, 'high');
      assert.equal(after.auto_scan, 'true');
      assert.equal(after.auto_sbom_generation, 'true');
      assert.equal(after.enable_content_trust, 'true');
      assert.equal(after.retention_id, '99');
      for (let i = 0; i < 8; i++) assert.equal(after[`system_key_${i}`], String(i));
      assert.equal(after.public, before.public);
      const adds = await Promise.allSettled(Array.from({ length: 6 }, () => service.addMetadata(alpha, { prevent_vul: 'true' })));
      assert.equal(adds.filter((r) => r.status === 'fulfilled').length, 1, 'one add wins');
      for (const r of adds) if (r.status === 'rejected') assert.ok(r.reason instanceof ApiError && r.reason.code === 'CONFLICT', String(r.reason));
      for (let i = 0; i < 8; i++) await service.setSystemMetadata(alpha, `system_key_${i}`, undefined);
      await service.setSystemMetadata(alpha, 'retention_id', undefined);
      await rejects(service.setSystemMetadata({ id: 987_654, name: 'gone', public: false, createdAt: 0 }, 'retention_id', '1'), 'NOT_FOUND');
    });

    it('members: add by id or name, 409 twice, 404 unknown user, roles 1..5, list with a literal name filter, update, remove', async () => {
      const alpha = await project('alpha');
      const carol = await insertUser('carol_1');
      const dave = await insertUser('dave%x');
      const bobId = await service.members.add(alpha, { role_id: 2, member_user: { user_id: bob.id } });
      await service.members.add(alpha, { role_id: 3, member_user: { username: 'carol_1' } });
      await service.members.add(alpha, { role_id: 4, member_user: { user_id: dave.id, username: 'dave%x' } });
      await rejects(service.members.add(alpha, { role_id: 3, member_user: { username: 'bob' } }), 'CONFLICT', /already a member/);
      await rejects(service.members.add(alpha, { role_id: 3, member_user: { username: 'nobody' } }), 'NOT_FOUND');
      await rejects(service.members.add(alpha, { role_id: 3, member_user: { user_id: 999999 } }), 'NOT_FOUND');
      await rejects(service.members.add(alpha, { role_id: 3, member_user: { user_id: carol.id, username: 'bob' } }), 'BAD_REQUEST');
      await rejects(service.members.add(alpha, { role_id: 6, member_user: { user_id: carol.id } }), 'BAD_REQUEST', /role_id/);
      await rejects(service.members.add(alpha, { role_id: 0, member_user: { user_id: carol.id } }), 'BAD_REQUEST');
      await rejects(service.members.add(alpha, { role_id: 3 }), 'BAD_REQUEST', /member_user/);
      await rejects(service.members.add(alpha, { role_id: 3, member_group: { id: 1 } }), 'BAD_REQUEST', /groups/);

      const all = await service.members.list(alpha, undefined, { offset: 0, limit: 10 });
      assert.deepEqual(
        all.items.map((m) => [m.username, m.roleId, m.roleName]),
        [
          ['alice', 1, 'projectAdmin'],
          ['bob', 2, 'developer'],
          ['carol_1', 3, 'guest'],
          ['dave%x', 4, 'maintainer'],
        ],
      );
      assert.equal(all.total, 4);
      assert.deepEqual((await service.members.list(alpha, '_', { offset: 0, limit: 10 })).items.map((m) => m.username), ['carol_1']);
      assert.deepEqual((await service.members.list(alpha, '%', { offset: 0, limit: 10 })).items.map((m) => m.username), ['dave%x']);
      const page = await service.members.list(alpha, undefined, { offset: 1, limit: 2 });
      assert.deepEqual(
        page.items.map((m) => m.username),
        ['bob', 'carol_1'],
      );
      assert.equal(page.total, 4);
      assert.deepEqual(await service.summary(alpha, { members: true, quota: true }), {
        repoCount: 0,
        members: { projectAdmin: 1, developer: 1, guest: 1, maintainer: 1, limitedGuest: 0 },
        quota: { hard: 42, used: 0 },
      });

      await service.members.updateRole(alpha, bobId, 5);
      assert.deepEqual(await service.rolesOf(bob.id, alpha.id), [5]);
      await rejects(service.members.updateRole(alpha, bobId, 9), 'BAD_REQUEST');
      await rejects(service.members.updateRole(alpha, 999999, 2), 'NOT_FOUND');
      const other = await project('robot-seen');
      await rejects(service.members.get(other, bobId), 'NOT_FOUND', /member/);
      await rejects(service.members.updateRole(other, bobId, 2), 'NOT_FOUND');
      await rejects(service.members.remove(other, bobId), 'NOT_FOUND');
      assert.equal((await service.members.get(alpha, bobId)).username, 'bob');
      await service.members.remove(alpha, bobId);
      await rejects(service.members.remove(alpha, bobId), 'NOT_FOUND');
      assert.deepEqual(await service.rolesOf(bob.id, alpha.id), []);
    });

    it('quotas: list (reference filter, sort, page), get, setHard (below usage allowed; -1 or positive)', async () => {
      const alpha = await project('alpha');
      const quota = await service.quotas.ofProject(alpha.id);
      assert.ok(quota);
      await handle.db.updateTable('quotas').set({ used: 100 }).where('id', '=', quota.id).execute();
      now += 1000;
      await service.quotas.setHard(quota.id, 50);
      const after = await service.quotas.get(quota.id);
      assert.equal(after.hard, 50);
      assert.equal(after.used, 100);
      assert.equal(after.updatedAt, now);
      assert.equal(after.projectName, 'alpha');
      assert.equal(after.ownerName, 'alice');
      await service.quotas.setHard(quota.id, -1);
      for (const bad of [0, -2, 1.5]) await rejects(service.quotas.setHard(quota.id, bad), 'BAD_REQUEST');
      await rejects(service.quotas.setHard(999999, 10), 'NOT_FOUND');
      await rejects(service.quotas.get(999999), 'NOT_FOUND');

      const all = await service.quotas.list({ sort: [], page: { offset: 0, limit: 100 } });
      const projects = await handle.db.selectFrom('projects').select('id').execute();
      assert.equal(all.total, projects.length);
      const ids = all.items.map((q) => q.id);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
      const one = await service.quotas.list({ reference: 'project', referenceId: String(alpha.id), sort: [], page: { offset: 0, limit: 10 } });
      assert.deepEqual(
        one.items.map((q) => q.projectName),
        ['alpha'],
      );
      assert.equal(one.total, 1);
      assert.equal((await service.quotas.list({ reference: 'user', sort: [], page: { offset: 0, limit: 10 } })).total, 0);
      assert.equal((await service.quotas.list({ referenceId: 'abc', sort: [], page: { offset: 0, limit: 10 } })).total, 0);
      const byUsed = await service.quotas.list({ sort: [{ key: 'used.storage', desc: true }], page: { offset: 0, limit: 1 } });
      assert.equal(byUsed.items[0]?.projectName, 'alpha');
      const byHard = await service.quotas.list({ sort: [{ key: 'hard.storage', desc: false }], page: { offset: 0, limit: 100 } });
      const hards = byHard.items.map((q) => q.hard);
      assert.deepEqual(hards, [...hards].sort((a, b) => a - b));
    });
  });
}
