/**
 * The queries of the projects capability: projects, their members and quotas, plus the few reads
 * of `users` (names, the lowest system admin) and `repositories` (what a project holds) it needs.
 *
 * A repository belongs to project P when its name starts with `P/`: in byte order those names lie
 * in [`P/`, `P0`) because '0' follows '/', so a range on the unique name index finds them.
 */
import { type Expression, type ExpressionBuilder, type Kysely, type SqlBool, sql } from 'kysely';
import { lockForUpdate, writeTransaction } from '../platform/db/dialect.ts';
import type { Database } from '../platform/db/schema.ts';
import { parseStoredMetadata } from './metadata.ts';

export interface ProjectRow {
  readonly id: number;
  readonly name: string;
  readonly owner_id: number | null;
  readonly public: number;
  readonly metadata: string;
  readonly created_at: number;
  readonly updated_at: number;
}

/** A project with what its listing shows beside it. */
export interface ProjectListRow extends ProjectRow {
  readonly owner_name: string | null;
  readonly repo_count: number;
}

export interface MemberRow {
  readonly id: number;
  readonly project_id: number;
  readonly user_id: number;
  readonly username: string;
  readonly role_id: number;
  readonly created_at: number;
  readonly updated_at: number;
}

export interface QuotaRow {
  readonly id: number;
  readonly project_id: number;
  readonly project_name: string;
  readonly owner_name: string | null;
  readonly hard: number;
  readonly used: number;
  readonly created_at: number;
  readonly updated_at: number;
}

export interface UserRef {
  readonly id: number;
  readonly username: string;
}

/** Which projects a listing may show. */
export type Visibility =
  | { readonly kind: 'all' }
  | { readonly kind: 'public' }
  /** Public projects and those the user is a member of. */
  | { readonly kind: 'member'; readonly userId: number }
  /** Public projects and the named ones (a robot's namespaces). */
  | { readonly kind: 'names'; readonly names: readonly string[] };

/** A condition on a text column. */
export type TextMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'fuzzy'; readonly value: string }
  | { readonly kind: 'any'; readonly values: readonly string[] };

export interface ProjectFilter {
  readonly visibility: Visibility;
  readonly name?: readonly TextMatch[];
  readonly public?: boolean;
  readonly owner?: string;
  readonly ids?: readonly number[];
}

export type ProjectSortKey = 'name' | 'creation_time' | 'update_time' | 'project_id';
export type QuotaSortKey = 'id' | 'creation_time' | 'update_time' | 'hard.storage' | 'used.storage';
export interface Sort<K extends string> {
  readonly key: K;
  readonly desc: boolean;
}

export interface Page {
  readonly offset: number;
  readonly limit: number;
}

const PROJECT_SORT_COLUMNS: Record<ProjectSortKey, 'p.name' | 'p.created_at' | 'p.updated_at' | 'p.id'> = {
  name: 'p.name',
  creation_time: 'p.created_at',
  update_time: 'p.updated_at',
  project_id: 'p.id',
};

const QUOTA_SORT_COLUMNS: Record<QuotaSortKey, 'q.id' | 'q.created_at' | 'q.updated_at' | 'q.hard' | 'q.used'> = {
  id: 'q.id',
  creation_time: 'q.created_at',
  update_time: 'q.updated_at',
  'hard.storage': 'q.hard',
  'used.storage': 'q.used',
};

/** `value` as a LIKE pattern matching it anywhere, with LIKE's wildcards escaped (escape character `\`). */
function containsPattern(value: string): string {
  return `%${value.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

type ProjectScope = ExpressionBuilder<Database & { p: Database['projects'] }, 'p'>;

function textCondition(eb: ProjectScope, match: TextMatch): Expression<SqlBool> {
  switch (match.kind) {
    case 'exact':
      return eb('p.name', '=', match.value);
    case 'fuzzy':
      return sql<SqlBool>`${eb.ref('p.name')} like ${containsPattern(match.value)} escape '\\'`;
    case 'any':
      return match.values.length === 0 ? sql<SqlBool>`1 = 0` : eb('p.name', 'in', match.values);
  }
}

/** Repositories of the project `p` in a query: the name range [p.name || '/', p.name || '0'). */
function repositoryCount(eb: ProjectScope) {
  return eb
    .selectFrom('repositories as r')
    .select((e) => e.fn.countAll<number>().as('n'))
    .where(sql<SqlBool>`r.name >= (p.name || '/')`)
    .where(sql<SqlBool>`r.name < (p.name || '0')`);
}

export class ProjectStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  // ── projects ────────────────────────────────────────────────────────────

  async projectById(id: number): Promise<ProjectRow | undefined> {
    return this.#db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async projectByName(name: string): Promise<ProjectRow | undefined> {
    return this.#db.selectFrom('projects').selectAll().where('name', '=', name).executeTakeFirst();
  }

  /**
   * Inserts a project with its quota row and, when `memberUserId` is given, that user as Project
   * Admin, in one transaction. Undefined when the name is taken (the unique index decides, so two
   * racing creations cannot both win).
   */
  async insertProject(project: {
    name: string;
    ownerId: number | null;
    public: boolean;
    metadata: Record<string, string>;
    hard: number;
    memberUserId: number | null;
    now: number;
  }): Promise<number | undefined> {
    return this.#db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('projects')
        .values({
          name: project.name,
          owner_id: project.ownerId,
          public: project.public ? 1 : 0,
          metadata: JSON.stringify(project.metadata),
          created_at: project.now,
          updated_at: project.now,
        })
        .onConflict((oc) => oc.column('name').doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!inserted) return undefined;
      const id = Number(inserted.id);
      await trx.insertInto('quotas').values({ project_id: id, hard: project.hard, used: 0, created_at: project.now, updated_at: project.now }).execute();
      if (project.memberUserId !== null) {
        await trx
          .insertInto('project_members')
          .values({ project_id: id, user_id: project.memberUserId, role_id: 1, created_at: project.now, updated_at: project.now })
          .execute();
      }
      return id;
    });
  }

  /**
   * Changes a project's public flag and metadata as one read-modify-write: the row is locked (FOR
   * UPDATE on PostgreSQL; SQLite's write transaction excludes other writers), `change` gets what
   * is stored now and returns what to store, or undefined to leave it. Two changes of different
   * keys at once (an admin's PUT and retention setting retention_id) both land. False when the
   * project is gone. An error `change` throws rolls the transaction back and reaches the caller.
   */
  async changeProject(
    id: number,
    now: number,
    change: (current: { public: boolean; metadata: Record<string, string> }) => { public: boolean; metadata: Record<string, string> } | undefined,
  ): Promise<boolean> {
    return writeTransaction(this.#db, async (trx) => {
      const row = await lockForUpdate(trx, trx.selectFrom('projects').select(['public', 'metadata']).where('id', '=', id)).executeTakeFirst();
      if (!row) return false;
      const next = change({ public: row.public === 1, metadata: parseStoredMetadata(row.metadata) });
      if (next === undefined) return true;
      await trx
        .updateTable('projects')
        .set({ public: next.public ? 1 : 0, metadata: JSON.stringify(next.metadata), updated_at: now })
        .where('id', '=', id)
        .execute();
      return true;
    });
  }

  /**
   * Deletes the project (its members, robots, quota and quota ledger go with it by cascade) unless
   * it holds a repository, in one statement. 'held' when a repository stopped it, 'gone' when there
   * was no such project.
   */
  async deleteProjectIfEmpty(id: number, name: string): Promise<'deleted' | 'held' | 'gone'> {
    const result = await this.#db
      .deleteFrom('projects')
      .where('id', '=', id)
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('repositories')
              .select('repositories.id')
              .where('repositories.name', '>=', `${name}/`)
              .where('repositories.name', '<', `${name}0`),
          ),
        ),
      )
      .executeTakeFirst();
    if (Number(result.numDeletedRows) === 1) return 'deleted';
    return (await this.projectById(id)) ? 'held' : 'gone';
  }

  async repositoryCount(name: string): Promise<number> {
    const row = await this.#db
      .selectFrom('repositories')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('name', '>=', `${name}/`)
      .where('name', '<', `${name}0`)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** One page of projects matching the filter, with the total. */
  async listProjects(filter: ProjectFilter, sorts: readonly Sort<ProjectSortKey>[], page: Page): Promise<{ rows: ProjectListRow[]; total: number }> {
    let query = this.#db.selectFrom('projects as p').leftJoin('users as u', 'u.id', 'p.owner_id');
    const visibility = filter.visibility;
    if (visibility.kind === 'public') query = query.where('p.public', '=', 1);
    else if (visibility.kind === 'member') {
      query = query.where((eb) =>
        eb.or([
          eb('p.public', '=', 1),
          eb.exists(eb.selectFrom('project_members as m').select('m.id').whereRef('m.project_id', '=', 'p.id').where('m.user_id', '=', visibility.userId)),
        ]),
      );
    } else if (visibility.kind === 'names') {
      query = query.where((eb) => (visibility.names.length === 0 ? eb('p.public', '=', 1) : eb.or([eb('p.public', '=', 1), eb('p.name', 'in', visibility.names)])));
    }
    for (const match of filter.name ?? []) query = query.where((eb) => textCondition(eb, match));
    if (filter.public !== undefined) query = query.where('p.public', '=', filter.public ? 1 : 0);
    if (filter.owner !== undefined) query = query.where('u.username', '=', filter.owner);
    if (filter.ids !== undefined) query = filter.ids.length === 0 ? query.where(sql<SqlBool>`1 = 0`) : query.where('p.id', 'in', filter.ids);

    const total = await query.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    let rows = query.selectAll('p').select(['u.username as owner_name']).select((eb) => repositoryCount(eb).as('repo_count'));
    for (const sort of sorts) rows = rows.orderBy(PROJECT_SORT_COLUMNS[sort.key], sort.desc ? 'desc' : 'asc');
    if (!sorts.some((s) => s.key === 'project_id')) rows = rows.orderBy('p.id', 'asc');
    const found = await rows.limit(page.limit).offset(page.offset).execute();
    return {
      rows: found.map((r) => ({ ...r, repo_count: Number(r.repo_count ?? 0) })),
      total: Number(total.n),
    };
  }

  /** One project with its owner's name and repository count. */
  async projectDetail(id: number): Promise<ProjectListRow | undefined> {
    const row = await this.#db
      .selectFrom('projects as p')
      .leftJoin('users as u', 'u.id', 'p.owner_id')
      .selectAll('p')
      .select(['u.username as owner_name'])
      .select((eb) => repositoryCount(eb).as('repo_count'))
      .where('p.id', '=', id)
      .executeTakeFirst();
    return row ? { ...row, repo_count: Number(row.repo_count ?? 0) } : undefined;
  }

  // ── members ─────────────────────────────────────────────────────────────

  async rolesOf(userId: number, projectId: number): Promise<number[]> {
    const rows = await this.#db.selectFrom('project_members').select('role_id').where('project_id', '=', projectId).where('user_id', '=', userId).execute();
    return rows.map((r) => r.role_id);
  }

  /** The user's roles in each of the projects (for listings). */
  async rolesIn(userId: number, projectIds: readonly number[]): Promise<Map<number, number[]>> {
    const roles = new Map<number, number[]>();
    if (projectIds.length === 0) return roles;
    const rows = await this.#db
      .selectFrom('project_members')
      .select(['project_id', 'role_id'])
      .where('user_id', '=', userId)
      .where('project_id', 'in', [...projectIds])
      .execute();
    for (const row of rows) roles.set(row.project_id, [...(roles.get(row.project_id) ?? []), row.role_id]);
    return roles;
  }

  /** Members per role id. */
  async memberCounts(projectId: number): Promise<Map<number, number>> {
    const rows = await this.#db
      .selectFrom('project_members')
      .select(['role_id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('project_id', '=', projectId)
      .groupBy('role_id')
      .execute();
    return new Map(rows.map((r) => [r.role_id, Number(r.n)]));
  }

  async listMembers(projectId: number, entityName: string | undefined, page: Page): Promise<{ rows: MemberRow[]; total: number }> {
    let query = this.#db.selectFrom('project_members as m').innerJoin('users as u', 'u.id', 'm.user_id').where('m.project_id', '=', projectId);
    if (entityName !== undefined && entityName !== '') query = query.where(sql<SqlBool>`u.username like ${containsPattern(entityName)} escape '\\'`);
    const total = await query.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const rows = await query
      .selectAll('m')
      .select('u.username as username')
      .orderBy('u.username', 'asc')
      .orderBy('m.id', 'asc')
      .limit(page.limit)
      .offset(page.offset)
      .execute();
    return { rows, total: Number(total.n) };
  }

  async member(projectId: number, memberId: number): Promise<MemberRow | undefined> {
    return this.#db
      .selectFrom('project_members as m')
      .innerJoin('users as u', 'u.id', 'm.user_id')
      .selectAll('m')
      .select('u.username as username')
      .where('m.project_id', '=', projectId)
      .where('m.id', '=', memberId)
      .executeTakeFirst();
  }

  /** The new member's id, or undefined when the user already is a member. */
  async insertMember(projectId: number, userId: number, roleId: number, now: number): Promise<number | undefined> {
    const row = await this.#db
      .insertInto('project_members')
      .values({ project_id: projectId, user_id: userId, role_id: roleId, created_at: now, updated_at: now })
      .onConflict((oc) => oc.columns(['project_id', 'user_id']).doNothing())
      .returning('id')
      .executeTakeFirst();
    return row ? Number(row.id) : undefined;
  }

  async updateMemberRole(projectId: number, memberId: number, roleId: number, now: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('project_members')
      .set({ role_id: roleId, updated_at: now })
      .where('project_id', '=', projectId)
      .where('id', '=', memberId)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async deleteMember(projectId: number, memberId: number): Promise<boolean> {
    const result = await this.#db.deleteFrom('project_members').where('project_id', '=', projectId).where('id', '=', memberId).executeTakeFirst();
    return Number(result.numDeletedRows) === 1;
  }

  // ── users (read only: the users capability owns the table) ─────────────

  async userById(id: number): Promise<UserRef | undefined> {
    return this.#db.selectFrom('users').select(['id', 'username']).where('id', '=', id).executeTakeFirst();
  }

  async userByName(username: string): Promise<UserRef | undefined> {
    return this.#db.selectFrom('users').select(['id', 'username']).where('username', '=', username).executeTakeFirst();
  }

  /** The system admin with the lowest id: the owner of projects robots create (as in Harbor). */
  async firstSysadmin(): Promise<UserRef | undefined> {
    return this.#db.selectFrom('users').select(['id', 'username']).where('sysadmin', '=', 1).orderBy('id', 'asc').limit(1).executeTakeFirst();
  }

  // ── quotas ──────────────────────────────────────────────────────────────

  #quotas() {
    return this.#db
      .selectFrom('quotas as q')
      .innerJoin('projects as p', 'p.id', 'q.project_id')
      .leftJoin('users as u', 'u.id', 'p.owner_id')
      .select(['q.id', 'q.project_id', 'p.name as project_name', 'u.username as owner_name', 'q.hard', 'q.used', 'q.created_at', 'q.updated_at']);
  }

  async quotaById(id: number): Promise<QuotaRow | undefined> {
    return this.#quotas().where('q.id', '=', id).executeTakeFirst();
  }

  async quotaOfProject(projectId: number): Promise<QuotaRow | undefined> {
    return this.#quotas().where('q.project_id', '=', projectId).executeTakeFirst();
  }

  async listQuotas(projectId: number | undefined, sorts: readonly Sort<QuotaSortKey>[], page: Page): Promise<{ rows: QuotaRow[]; total: number }> {
    let count = this.#db.selectFrom('quotas as q');
    if (projectId !== undefined) count = count.where('q.project_id', '=', projectId);
    const total = await count.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    let rows = this.#quotas();
    if (projectId !== undefined) rows = rows.where('q.project_id', '=', projectId);
    for (const sort of sorts) rows = rows.orderBy(QUOTA_SORT_COLUMNS[sort.key], sort.desc ? 'desc' : 'asc');
    if (!sorts.some((s) => s.key === 'id')) rows = rows.orderBy('q.id', 'asc');
    return { rows: await rows.limit(page.limit).offset(page.offset).execute(), total: Number(total.n) };
  }

  async updateQuotaHard(id: number, hard: number, now: number): Promise<boolean> {
    const result = await this.#db.updateTable('quotas').set({ hard, updated_at: now }).where('id', '=', id).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Sets the hard limit of a project's quota, creating the row if a project somehow lacks one. */
  async setProjectHard(projectId: number, hard: number, now: number): Promise<void> {
    const result = await this.#db.updateTable('quotas').set({ hard, updated_at: now }).where('project_id', '=', projectId).executeTakeFirst();
    if (Number(result.numUpdatedRows) === 1) return;
    await this.#db
      .insertInto('quotas')
      .values({ project_id: projectId, hard, used: 0, created_at: now, updated_at: now })
      .onConflict((oc) => oc.column('project_id').doUpdateSet({ hard, updated_at: now }))
      .execute();
  }
}
