/**
 * RobotService (src/iam/robots.ts) on every database backend: creation, the secret shown once
 * and checked through argon2, expiry and disabling, "never more than the caller holds", bad
 * input that stores nothing, listing, updates, secret refresh, deletion, and robots whose
 * projects are deleted. Projects and members are rows in the real tables, read through a small
 * ProjectDirectory, so these tests need nothing from the projects capability.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import argon2 from '@node-rs/argon2';
import type { FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { AccessControl, type ProjectDirectory, type ProjectRef } from '../../src/iam/access.ts';
import { ProjectRole, type Subject } from '../../src/iam/rbac.ts';
import { robotGuard } from '../../src/iam/robot-routes.ts';
import { permissionCatalog, type RobotCreateInput, type RobotGuard, RobotService } from '../../src/iam/robots.ts';
import { ApiError } from '../../src/platform/http/api.ts';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import type { Database } from '../../src/platform/db/schema.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';

const DAY = 86_400_000;
const T0 = 1_700_000_000_000;

/** The projects capability as the authoriser sees it, over the real tables. */
class TableProjects implements ProjectDirectory {
  readonly #db: Kysely<Database>;
  constructor(db: Kysely<Database>) {
    this.#db = db;
  }
  async find(nameOrId: string | number): Promise<ProjectRef | undefined> {
    const byId = typeof nameOrId === 'number' || /^[0-9]+$/.test(nameOrId);
    const row = await this.#db
      .selectFrom('projects')
      .select(['id', 'name', 'public', 'created_at'])
      .where(byId ? 'id' : 'name', '=', byId ? Number(nameOrId) : String(nameOrId))
      .executeTakeFirst();
    return row ? { id: Number(row.id), name: row.name, public: Number(row.public) === 1, createdAt: Number(row.created_at) } : undefined;
  }
  async rolesOf(userId: number, projectId: number): Promise<number[]> {
    const rows = await this.#db.selectFrom('project_members').select('role_id').where('user_id', '=', userId).where('project_id', '=', projectId).execute();
    return rows.map((r) => Number(r.role_id));
  }
}

const admin: Subject = { kind: 'user', id: 1, name: 'admin', sysadmin: true };
const user = (id: number, name: string): Subject => ({ kind: 'user', id, name, sysadmin: false });
/** A guard as the routes build it, for a request made by `subject`. */
const guardOf = (access: AccessControl, subject: Subject): RobotGuard => robotGuard(access, { subject } as unknown as FastifyRequest);

const pullPush = [
  { resource: 'repository', action: 'pull' },
  { resource: 'repository', action: 'push' },
];

/** Rejects with an ApiError of this code whose message matches. */
async function rejectsApi(promise: Promise<unknown>, code: ApiError['code'], message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

for (const backend of BACKENDS) {
  describe(`RobotService on ${backend}`, () => {
    let testDatabase: TestDatabase;
    let dataDir: string;
    let handle: DatabaseHandle;
    let db: Kysely<Database>;
    let projects: TableProjects;
    let access: AccessControl;
    let robots: RobotService;
    let now = T0;
    let changes = 0;
    const ids: Record<string, number> = {};
    const users: Record<string, Subject> = {};

    const countRobots = async () => Number((await db.selectFrom('robots').select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow()).n);
    const as = (subject: Subject) => guardOf(access, subject);

    async function addProject(name: string, isPublic: boolean): Promise<number> {
      const row = await db
        .insertInto('projects')
        .values({ name, owner_id: 1, public: isPublic ? 1 : 0, metadata: '{}', created_at: now, updated_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      return Number(row.id);
    }

    before(async () => {
      testDatabase = await createTestDatabase(backend);
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-robots-'));
      handle = createDatabase({ url: testDatabase.url, sqliteFile: path.join(dataDir, 'berth.db') });
      await handle.migrate();
      db = handle.db;
      for (const [i, name] of ['admin', 'alice', 'bob', 'carol', 'dave', 'erin'].entries()) {
        await db
          .insertInto('users')
          .values({ username: name, email: null, realname: name, comment: '', password_hash: 'x', sysadmin: i === 0 ? 1 : 0, created_at: now, updated_at: now })
          .execute();
        const row = await db.selectFrom('users').select('id').where('username', '=', name).executeTakeFirstOrThrow();
        users[name] = i === 0 ? admin : user(Number(row.id), name);
      }
      ids.alpha = await addProject('alpha', false);
      ids.beta = await addProject('beta', false);
      ids.library = await addProject('library', true);
      const member = async (project: string, who: string, role: number) => {
        const subject = users[who] as Extract<Subject, { kind: 'user' }>;
        await db
          .insertInto('project_members')
          .values({ project_id: ids[project] as number, user_id: subject.id, role_id: role, created_at: now, updated_at: now })
          .execute();
      };
      await member('alpha', 'alice', ProjectRole.projectAdmin);
      await member('alpha', 'bob', ProjectRole.developer);
      await member('alpha', 'carol', ProjectRole.guest);
      await member('beta', 'dave', ProjectRole.projectAdmin);
      projects = new TableProjects(db);
      access = new AccessControl(projects);
      robots = new RobotService({ db, projects, prefix: 'robot$', defaultDays: 30, now: () => now, onCredentialsChanged: () => changes++ });
    });

    after(async () => {
      await handle?.close();
      await testDatabase?.drop();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    beforeEach(() => {
      now = T0;
    });

    describe('project robots', () => {
      it('a project admin creates one: full name, secret once, only its hash stored, and it logs in', async () => {
        const { robot, secret } = await robots.create(as(users.alice as Subject), {
          name: 'ci',
          level: 'project',
          description: 'pushes from CI',
          permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }],
        });
        assert.equal(robot.name, 'robot$alpha+ci');
        assert.equal(robot.level, 'project');
        assert.equal(robot.projectId, ids.alpha);
        assert.equal(robot.description, 'pushes from CI');
        assert.equal(robot.duration, 30);
        assert.equal(robot.expiresAt, T0 + 30 * DAY);
        assert.equal(robot.creatorType, 'local');
        assert.equal(robot.creatorRef, (users.alice as { id: number }).id);
        assert.deepEqual(robot.permissions, [
          {
            kind: 'project',
            namespace: 'alpha',
            access: [
              { resource: 'repository', action: 'pull', effect: 'allow' },
              { resource: 'repository', action: 'push', effect: 'allow' },
            ],
          },
        ]);
        assert.match(secret, /^[A-Za-z0-9]{32}$/);
        const row = await db.selectFrom('robots').selectAll().where('id', '=', robot.id).executeTakeFirstOrThrow();
        assert.match(row.secret_hash, /^\$argon2id\$/);
        assert.ok(!JSON.stringify(row).includes(secret), 'the plain secret is stored nowhere');

        const subject = await robots.checkSecret('robot$alpha+ci', secret);
        assert.deepEqual(subject, {
          kind: 'robot',
          id: robot.id,
          name: 'robot$alpha+ci',
          access: [
            { kind: 'project', namespace: 'alpha', resource: 'repository', action: 'pull' },
            { kind: 'project', namespace: 'alpha', resource: 'repository', action: 'push' },
          ],
        });
        assert.equal(await robots.checkSecret('robot$alpha+ci', `${secret}x`), undefined);
        assert.equal(await robots.checkSecret('robot$alpha+ci', ''), undefined);
        assert.deepEqual(await robots.subjectByName('robot$alpha+ci'), subject);
        // What it may do, through the one authorization function.
        const alpha = (await projects.find('alpha')) as ProjectRef;
        const beta = (await projects.find('beta')) as ProjectRef;
        assert.equal(await access.can(subject as Subject, alpha, 'repository', 'push'), true);
        assert.equal(await access.can(subject as Subject, alpha, 'repository', 'delete'), false);
        assert.equal(await access.can(subject as Subject, beta, 'repository', 'pull'), false);
      });

      it('an unknown name costs an argon2 verification too, and names without the prefix are never robots', async () => {
        const original = argon2.verify;
        let calls = 0;
        argon2.verify = (async (...args: Parameters<typeof original>) => {
          calls++;
          return original(...args);
        }) as typeof original;
        try {
          assert.equal(await robots.checkSecret('robot$nobody', 'Secret123'), undefined);
          assert.equal(calls, 1);
          assert.equal(await robots.checkSecret('alpha+ci', 'Secret123'), undefined);
          assert.equal(calls, 2);
        } finally {
          argon2.verify = original;
        }
        assert.equal(robots.isRobotName('robot$x'), true);
        assert.equal(robots.isRobotName('admin'), false);
        assert.equal(await robots.subjectByName('robot$nobody'), undefined);
      });

      it('takes a secret of the caller\'s choosing, and refuses a weak one', async () => {
        const { secret } = await robots.create(as(admin), {
          name: 'chosen',
          level: 'project',
          secret: 'MySecret123',
          permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }],
        });
        assert.equal(secret, 'MySecret123');
        assert.ok(await robots.checkSecret('robot$alpha+chosen', 'MySecret123'));
        const before = await countRobots();
        await rejectsApi(
          robots.create(as(admin), {
            name: 'weak',
            level: 'project',
            secret: 'password',
            permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }],
          }),
          'BAD_REQUEST',
          /uppercase letter/,
        );
        assert.equal(await countRobots(), before);
      });

      it('a project admin cannot create a robot for another project: 404 when private, 403 when public', async () => {
        const before = await countRobots();
        await rejectsApi(
          robots.create(as(users.alice as Subject), { name: 'x', level: 'project', permissions: [{ kind: 'project', namespace: 'beta', access: pullPush }] }),
          'NOT_FOUND',
        );
        await rejectsApi(
          robots.create(as(users.alice as Subject), { name: 'x', level: 'project', permissions: [{ kind: 'project', namespace: 'library', access: pullPush }] }),
          'FORBIDDEN',
        );
        await rejectsApi(
          robots.create(as(users.alice as Subject), { name: 'x', level: 'project', permissions: [{ kind: 'project', namespace: 'nosuch', access: pullPush }] }),
          'NOT_FOUND',
          /project nosuch not found/,
        );
        assert.equal(await countRobots(), before);
      });

      it('developers and guests may not create robots; anonymous callers are told to log in', async () => {
        const before = await countRobots();
        const input: RobotCreateInput = {
          name: 'dev',
          level: 'project',
          permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'repository', action: 'delete' }] }],
        };
        await rejectsApi(robots.create(as(users.bob as Subject), input), 'FORBIDDEN');
        await rejectsApi(robots.create(as(users.carol as Subject), input), 'FORBIDDEN');
        await rejectsApi(robots.create(as({ kind: 'anonymous' }), input), 'UNAUTHORIZED');
        assert.equal(await countRobots(), before);
      });

      it('a robot that may create robots cannot give one more than it holds', async () => {
        const { secret } = await robots.create(as(users.alice as Subject), {
          name: 'maker',
          level: 'project',
          permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'robot', action: 'create' }] }],
        });
        const maker = (await robots.checkSecret('robot$alpha+maker', secret)) as Subject;
        const before = await countRobots();
        await rejectsApi(
          robots.create(as(maker), {
            name: 'deleter',
            level: 'project',
            permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'repository', action: 'delete' }] }],
          }),
          'FORBIDDEN',
          /delete on repository in project alpha/,
        );
        assert.equal(await countRobots(), before);
        const { robot } = await robots.create(as(maker), { name: 'child', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }] });
        assert.equal(robot.creatorType, 'robot');
        assert.equal(robot.creatorRef, (maker as { id: number }).id);
      });

      it('refuses bad input with a 400 and stores nothing', async () => {
        const before = await countRobots();
        const base = { level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }] };
        const bad: Array<[string, RobotCreateInput, RegExp]> = [
          ['uppercase', { ...base, name: 'CI' }, /invalid/],
          ['plus', { ...base, name: 'a+b' }, /invalid/],
          ['leading separator', { ...base, name: '-a' }, /invalid/],
          ['double separator', { ...base, name: 'a..b' }, /invalid/],
          ['empty', { ...base, name: '' }, /1 to 255/],
          ['too long', { ...base, name: 'a'.repeat(256) }, /1 to 255/],
          ['duration 0', { ...base, name: 'd0', duration: 0 }, /duration/],
          ['duration -2', { ...base, name: 'd2', duration: -2 }, /duration/],
          ['duration fraction', { ...base, name: 'd3', duration: 1.5 }, /duration/],
          ['duration too long', { ...base, name: 'd4', duration: 36_501 }, /duration/],
          ['level', { ...base, name: 'l', level: 'global' }, /level/],
          ['description', { ...base, name: 'desc', description: 'x'.repeat(1025) }, /description/],
          ['no permissions', { name: 'np', level: 'project', permissions: [] }, /at least one permission/],
          ['no access', { name: 'na', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [] }] }, /at least one access/],
          ['unknown resource', { name: 'ur', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'helm-chart', action: 'read' }] }] }, /not a project permission/],
          ['unknown action', { name: 'ua', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'destroy' }] }] }, /not a project permission/],
          ['wildcard action', { name: 'wa', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: '*' }] }] }, /not a project permission/],
          ['deny', { name: 'dn', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull', effect: 'deny' }] }] }, /only "allow"/],
          ['push without pull', { name: 'pp', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'push' }] }] }, /push on repository needs pull/],
          [
            'two sets',
            {
              name: 'ts',
              level: 'project',
              permissions: [
                { kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] },
                { kind: 'project', namespace: 'beta', access: [{ resource: 'repository', action: 'pull' }] },
              ],
            },
            /exactly one permission set/,
          ],
          ['system kind', { name: 'sk', level: 'project', permissions: [{ kind: 'system', namespace: '/', access: [{ resource: 'catalog', action: 'read' }] }] }, /only hold project/],
          ['every project', { name: 'ep', level: 'project', permissions: [{ kind: 'project', namespace: '*', access: [{ resource: 'repository', action: 'pull' }] }] }, /one project/],
          ['bad kind', { name: 'bk', level: 'project', permissions: [{ kind: 'team', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }] }, /kind/],
        ];
        for (const [what, input, message] of bad) {
          await rejectsApi(robots.create(as(admin), input), 'BAD_REQUEST', message).catch((err: Error) => assert.fail(`${what}: ${err.message}`));
        }
        assert.equal(await countRobots(), before);
      });

      it('a name is taken once: 409', async () => {
        const input: RobotCreateInput = { name: 'twice', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }] };
        await robots.create(as(admin), input);
        const before = await countRobots();
        await rejectsApi(robots.create(as(admin), input), 'CONFLICT', /robot\$alpha\+twice/);
        assert.equal(await countRobots(), before);
        // The same short name in another project is another robot.
        const other = await robots.create(as(admin), { ...input, permissions: [{ kind: 'project', namespace: 'beta', access: [{ resource: 'repository', action: 'pull' }] }] });
        assert.equal(other.robot.name, 'robot$beta+twice');
      });

      it('five creations of one name at once: one robot, four 409s', async () => {
        const input: RobotCreateInput = { name: 'race', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }] };
        const results = await Promise.allSettled(Array.from({ length: 5 }, () => robots.create(as(admin), input)));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as ApiError).code, 'CONFLICT');
        const rows = await db.selectFrom('robots').select('id').where('name', '=', 'robot$alpha+race').execute();
        assert.equal(rows.length, 1);
      });
    });

    describe('system robots', () => {
      it('the system admin creates one with system, named-project and every-project permissions', async () => {
        const { robot, secret } = await robots.create(as(admin), {
          name: 'ops',
          level: 'system',
          duration: -1,
          permissions: [
            { kind: 'system', namespace: '/', access: [{ resource: 'catalog', action: 'read' }, { resource: 'project', action: 'create' }] },
            { kind: 'project', namespace: 'beta', access: pullPush },
            { kind: 'project', namespace: String(ids.alpha), access: [{ resource: 'artifact', action: 'delete' }] },
            { kind: 'project', namespace: '*', access: [{ resource: 'repository', action: 'pull' }] },
            { kind: 'project', namespace: 'beta', access: [{ resource: 'tag', action: 'list' }] },
          ],
        });
        assert.equal(robot.name, 'robot$ops');
        assert.equal(robot.projectId, null);
        assert.equal(robot.expiresAt, -1);
        assert.equal(robot.duration, -1);
        // Sets for the same project are merged; a project named by id is shown by name.
        assert.deepEqual(
          robot.permissions.map((p) => [p.kind, p.namespace, p.access.map((a) => `${a.resource}:${a.action}`).join(' ')]),
          [
            ['system', '/', 'catalog:read project:create'],
            ['project', 'beta', 'repository:pull repository:push tag:list'],
            ['project', 'alpha', 'artifact:delete'],
            ['project', '*', 'repository:pull'],
          ],
        );
        now = T0 + 10_000 * DAY; // never expires
        const subject = (await robots.checkSecret('robot$ops', secret)) as Subject;
        assert.ok(subject);
        const beta = (await projects.find('beta')) as ProjectRef;
        const alpha = (await projects.find('alpha')) as ProjectRef;
        assert.equal(access.canSystem(subject, 'catalog', 'read'), true);
        assert.equal(access.canSystem(subject, 'user', 'create'), false);
        assert.equal(await access.can(subject, beta, 'repository', 'push'), true);
        assert.equal(await access.can(subject, alpha, 'repository', 'pull'), true, 'through "*"');
        assert.equal(await access.can(subject, alpha, 'repository', 'push'), false);
      });

      it('only the system admin (or a robot granted robot:create system-wide) manages system robots', async () => {
        const before = await countRobots();
        const input: RobotCreateInput = { name: 'sys', level: 'system', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }] };
        await rejectsApi(robots.create(as(users.alice as Subject), input), 'FORBIDDEN');
        await rejectsApi(robots.list(as(users.alice as Subject), { level: 'system', offset: 0, limit: 10 }), 'FORBIDDEN');
        assert.equal(await countRobots(), before);
      });

      it('a robot with system robot:create grants only what it holds, and "*" only if it holds it everywhere', async () => {
        const { secret } = await robots.create(as(admin), {
          name: 'robot-admin',
          level: 'system',
          permissions: [
            { kind: 'system', namespace: '/', access: [{ resource: 'robot', action: 'create' }, { resource: 'catalog', action: 'read' }] },
            { kind: 'project', namespace: '*', access: [{ resource: 'repository', action: 'pull' }] },
            { kind: 'project', namespace: 'alpha', access: pullPush },
          ],
        });
        const maker = (await robots.checkSecret('robot$robot-admin', secret)) as Subject;
        const before = await countRobots();
        const refused: Array<[RobotCreateInput['permissions'], RegExp]> = [
          [[{ kind: 'system', namespace: '/', access: [{ resource: 'user', action: 'create' }] }], /create on user in the system/],
          [[{ kind: 'project', namespace: '*', access: pullPush }], /push on repository in every project/],
          [[{ kind: 'project', namespace: 'beta', access: pullPush }], /push on repository in project beta/],
        ];
        for (const [permissions, message] of refused) {
          await rejectsApi(robots.create(as(maker), { name: 'sub', level: 'system', permissions }), 'FORBIDDEN', message);
        }
        assert.equal(await countRobots(), before);
        const { robot } = await robots.create(as(maker), {
          name: 'sub',
          level: 'system',
          permissions: [
            { kind: 'system', namespace: '/', access: [{ resource: 'catalog', action: 'read' }] },
            { kind: 'project', namespace: '*', access: [{ resource: 'repository', action: 'pull' }] },
            { kind: 'project', namespace: 'beta', access: [{ resource: 'repository', action: 'pull' }] },
            { kind: 'project', namespace: 'alpha', access: pullPush },
          ],
        });
        assert.equal(robot.creatorType, 'robot');
      });

      it('refuses system permissions outside "/" and outside the catalogue, and configuration', async () => {
        const before = await countRobots();
        await rejectsApi(
          robots.create(as(admin), { name: 's1', level: 'system', permissions: [{ kind: 'system', namespace: 'alpha', access: [{ resource: 'catalog', action: 'read' }] }] }),
          'BAD_REQUEST',
          /namespace of system permissions/,
        );
        await rejectsApi(
          robots.create(as(admin), { name: 's2', level: 'system', permissions: [{ kind: 'system', namespace: '/', access: [{ resource: 'configuration', action: 'update' }] }] }),
          'BAD_REQUEST',
          /not a system permission/,
        );
        await rejectsApi(
          robots.create(as(admin), { name: 's3', level: 'system', permissions: [{ kind: 'system', namespace: '/', access: [{ resource: 'repository', action: 'pull' }] }] }),
          'BAD_REQUEST',
          /not a system permission/,
        );
        await rejectsApi(
          robots.create(as(admin), { name: 's4', level: 'system', permissions: [{ kind: 'project', namespace: 'nosuch', access: [{ resource: 'repository', action: 'pull' }] }] }),
          'NOT_FOUND',
        );
        assert.equal(await countRobots(), before);
      });
    });

    describe('expiry and disabling', () => {
      it('an expired robot is refused; its duration counts from creation', async () => {
        const { robot, secret } = await robots.create(as(admin), {
          name: 'shortlived',
          level: 'project',
          duration: 2,
          permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }],
        });
        assert.equal(robot.expiresAt, T0 + 2 * DAY);
        now = T0 + 2 * DAY - 1;
        assert.ok(await robots.checkSecret(robot.name, secret));
        now = T0 + 2 * DAY;
        assert.equal(await robots.checkSecret(robot.name, secret), undefined);
        assert.equal(await robots.subjectByName(robot.name), undefined);
        // Extending it brings it back; the new duration counts from creation too.
        const extended = await robots.update(as(admin), robot.id, { duration: 5 });
        assert.equal(extended.expiresAt, T0 + 5 * DAY);
        assert.ok(await robots.checkSecret(robot.name, secret));
        const forever = await robots.update(as(admin), robot.id, { duration: -1 });
        assert.equal(forever.expiresAt, -1);
        await rejectsApi(robots.update(as(admin), robot.id, { duration: 0 }), 'BAD_REQUEST', /duration/);
      });

      it('a disabled robot is refused until enabled again, and each change drops cached logins', async () => {
        const { robot, secret } = await robots.create(as(users.alice as Subject), {
          name: 'toggle',
          level: 'project',
          disable: true,
          permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }],
        });
        assert.equal(robot.disabled, true);
        assert.equal(await robots.checkSecret(robot.name, secret), undefined);
        const before = changes;
        assert.equal((await robots.update(as(users.alice as Subject), robot.id, { disable: false })).disabled, false);
        assert.ok(await robots.checkSecret(robot.name, secret));
        await robots.update(as(users.alice as Subject), robot.id, { disable: true });
        assert.equal(await robots.checkSecret(robot.name, secret), undefined);
        assert.equal(await robots.subjectByName(robot.name), undefined);
        assert.equal(changes, before + 2);
      });
    });

    describe('list, get, update, refresh, delete', () => {
      let listed: number[] = [];

      before(async () => {
        listed = [];
        const p = await addProject('listing', false);
        ids.listing = p;
        await db.insertInto('project_members').values({ project_id: p, user_id: (users.erin as { id: number }).id, role_id: ProjectRole.guest, created_at: now, updated_at: now }).execute();
        for (const name of ['web', 'api', 'web-2', 'db_x', 'dbx']) {
          const { robot } = await robots.create(as(admin), { name, level: 'project', permissions: [{ kind: 'project', namespace: 'listing', access: [{ resource: 'repository', action: 'pull' }] }] });
          listed.push(robot.id);
          now += 1000;
        }
      });

      it('lists a project\'s robots page by page, by name, sorted; members may list, others get 404', async () => {
        const page1 = await robots.list(as(admin), { level: 'project', projectId: ids.listing as number, offset: 0, limit: 2 });
        assert.equal(page1.total, 5);
        assert.deepEqual(page1.robots.map((r) => r.id), listed.slice(0, 2));
        const page3 = await robots.list(as(admin), { level: 'project', projectId: ids.listing as number, offset: 4, limit: 2 });
        assert.deepEqual(page3.robots.map((r) => r.id), listed.slice(4));
        const fuzzy = await robots.list(as(admin), { level: 'project', projectId: ids.listing as number, name: { match: 'fuzzy', value: 'web' }, offset: 0, limit: 10 });
        assert.deepEqual(fuzzy.robots.map((r) => r.name), ['robot$listing+web', 'robot$listing+web-2']);
        // "_" is a literal character, not a LIKE wildcard.
        const literal = await robots.list(as(admin), { level: 'project', projectId: ids.listing as number, name: { match: 'fuzzy', value: 'db_' }, offset: 0, limit: 10 });
        assert.deepEqual(literal.robots.map((r) => r.name), ['robot$listing+db_x']);
        const exact = await robots.list(as(admin), { level: 'project', projectId: ids.listing as number, name: { match: 'exact', value: 'listing+api' }, offset: 0, limit: 10 });
        assert.deepEqual(exact.robots.map((r) => r.name), ['robot$listing+api']);
        const sorted = await robots.list(as(admin), { level: 'project', projectId: ids.listing as number, sort: { field: 'name', descending: true }, offset: 0, limit: 10 });
        assert.deepEqual(sorted.robots.map((r) => r.name), ['robot$listing+web-2', 'robot$listing+web', 'robot$listing+dbx', 'robot$listing+db_x', 'robot$listing+api']);
        const asGuest = await robots.list(as(users.erin as Subject), { level: 'project', projectId: ids.listing as number, offset: 0, limit: 10 });
        assert.equal(asGuest.total, 5);
        await rejectsApi(robots.list(as(users.alice as Subject), { level: 'project', projectId: ids.listing as number, offset: 0, limit: 10 }), 'NOT_FOUND');
        await rejectsApi(robots.list(as(admin), { level: 'project', offset: 0, limit: 10 }), 'BAD_REQUEST', /ProjectID/);
        const system = await robots.list(as(admin), { level: 'system', offset: 0, limit: 100 });
        assert.ok(system.robots.length > 0 && system.robots.every((r) => r.level === 'system'));
        assert.equal(system.total, system.robots.length);
      });

      it('gets one robot if the caller may read robots of its project', async () => {
        const id = listed[0] as number;
        assert.equal((await robots.get(as(users.erin as Subject), id)).name, 'robot$listing+web');
        await rejectsApi(robots.get(as(users.alice as Subject), id), 'NOT_FOUND');
        await rejectsApi(robots.get(as(admin), 999_999), 'NOT_FOUND', /robot 999999 not found/);
        await rejectsApi(robots.get(as({ kind: 'anonymous' }), id), 'UNAUTHORIZED');
      });

      it('updates description and permissions; refuses renaming, another level, another project and guests', async () => {
        const id = listed[1] as number;
        now = T0 + DAY;
        const updated = await robots.update(as(admin), id, {
          name: 'robot$listing+api',
          level: 'project',
          description: 'now pushes',
          permissions: [{ kind: 'project', namespace: 'listing', access: [...pullPush, { resource: 'artifact', action: 'delete' }] }],
        });
        assert.equal(updated.description, 'now pushes');
        assert.deepEqual(updated.permissions[0]?.access.map((a) => a.action), ['pull', 'push', 'delete']);
        assert.equal(updated.updatedAt, T0 + DAY);
        await rejectsApi(robots.update(as(admin), id, { name: 'robot$listing+other' }), 'BAD_REQUEST', /name/);
        await rejectsApi(robots.update(as(admin), id, { level: 'system' }), 'BAD_REQUEST', /level/);
        await rejectsApi(
          robots.update(as(admin), id, { permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }] }),
          'BAD_REQUEST',
          /its own project, listing/,
        );
        await rejectsApi(robots.update(as(users.erin as Subject), id, { description: 'x' }), 'FORBIDDEN');
        await rejectsApi(
          robots.update(as(admin), id, { permissions: [{ kind: 'project', namespace: 'listing', access: [{ resource: 'repository', action: 'pull', effect: 'deny' }] }] }),
          'BAD_REQUEST',
        );
        assert.equal((await robots.get(as(admin), id)).description, 'now pushes', 'refused updates change nothing');
      });

      it('refreshes the secret: the old one stops working, the new one (generated or chosen) works', async () => {
        const { robot, secret } = await robots.create(as(users.alice as Subject), { name: 'rotate', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }] });
        const before = changes;
        const fresh = await robots.refreshSecret(as(users.alice as Subject), robot.id);
        assert.match(fresh, /^[A-Za-z0-9]{32}$/);
        assert.notEqual(fresh, secret);
        assert.equal(await robots.checkSecret(robot.name, secret), undefined);
        assert.ok(await robots.checkSecret(robot.name, fresh));
        assert.equal(await robots.refreshSecret(as(users.alice as Subject), robot.id, 'Chosen1234'), 'Chosen1234');
        assert.ok(await robots.checkSecret(robot.name, 'Chosen1234'));
        assert.equal(changes, before + 2);
        await rejectsApi(robots.refreshSecret(as(users.alice as Subject), robot.id, 'short'), 'BAD_REQUEST');
        await rejectsApi(robots.refreshSecret(as(users.bob as Subject), robot.id), 'FORBIDDEN');
        assert.ok(await robots.checkSecret(robot.name, 'Chosen1234'), 'refused refreshes change nothing');
      });

      it('a robot that may update robots cannot take over a more powerful one by refreshing its secret', async () => {
        const { secret } = await robots.create(as(admin), {
          name: 'updater',
          level: 'project',
          permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'robot', action: 'update' }, { resource: 'repository', action: 'pull' }] }],
        });
        const updater = (await robots.checkSecret('robot$alpha+updater', secret)) as Subject;
        const strong = await robots.create(as(admin), { name: 'strong', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }] });
        await rejectsApi(robots.refreshSecret(as(updater), strong.robot.id), 'FORBIDDEN', /push on repository/);
        await rejectsApi(
          robots.update(as(updater), strong.robot.id, { permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'repository', action: 'delete' }] }] }),
          'FORBIDDEN',
        );
        assert.ok(await robots.checkSecret(strong.robot.name, strong.secret));
        // Taking permissions away, or disabling, is allowed.
        await robots.update(as(updater), strong.robot.id, { disable: true });
        assert.equal(await robots.checkSecret(strong.robot.name, strong.secret), undefined);
      });

      it('deletes: the robot is gone and cannot log in', async () => {
        const { robot, secret } = await robots.create(as(users.alice as Subject), { name: 'gone', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }] });
        await rejectsApi(robots.delete(as(users.carol as Subject), robot.id), 'FORBIDDEN');
        const before = changes;
        await robots.delete(as(users.alice as Subject), robot.id);
        assert.equal(changes, before + 1);
        assert.equal(await robots.checkSecret(robot.name, secret), undefined);
        await rejectsApi(robots.get(as(admin), robot.id), 'NOT_FOUND');
        await rejectsApi(robots.delete(as(admin), robot.id), 'NOT_FOUND');
      });
    });

    describe('deleted projects', () => {
      it('take their project robots with them; a system robot loses them and gains nothing from a new project of that name', async () => {
        const temp = await addProject('temp', false);
        const projectRobot = await robots.create(as(admin), { name: 'bot', level: 'project', permissions: [{ kind: 'project', namespace: 'temp', access: pullPush }] });
        const systemRobot = await robots.create(as(admin), {
          name: 'spanning',
          level: 'system',
          permissions: [
            { kind: 'project', namespace: 'temp', access: pullPush },
            { kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] },
          ],
        });
        await db.deleteFrom('projects').where('id', '=', temp).execute();
        assert.equal(await robots.checkSecret(projectRobot.robot.name, projectRobot.secret), undefined);
        await addProject('temp', false);
        const subject = (await robots.checkSecret('robot$spanning', systemRobot.secret)) as Extract<Subject, { kind: 'robot' }>;
        assert.deepEqual(subject.access.map((a) => `${a.namespace}:${a.action}`), ['alpha:pull']);
        const again = (await projects.find('temp')) as ProjectRef;
        assert.equal(await access.can(subject, again, 'repository', 'pull'), false);
        assert.deepEqual((await robots.get(as(admin), systemRobot.robot.id)).permissions.map((p) => p.namespace), ['alpha']);
      });
    });

    it('the permission catalogue lists project and system permissions robots can hold', () => {
      const catalog = permissionCatalog();
      const has = (list: ReadonlyArray<{ resource: string; action: string }>, r: string, a: string) => list.some((p) => p.resource === r && p.action === a);
      assert.ok(has(catalog.project, 'repository', 'pull'));
      assert.ok(has(catalog.project, 'repository', 'push'));
      assert.ok(has(catalog.system, 'catalog', 'read'));
      assert.ok(has(catalog.system, 'robot', 'create'));
      assert.ok(!catalog.system.some((p) => p.resource === 'configuration'));
    });
  });
}
