/**
 * The queries of tag immutability: a project's rules, in the `immutable_rules` table (migration
 * 0006_immutability). Selectors are stored as the JSON the API takes.
 */
import type { Kysely, Selectable } from 'kysely';
import type { Database, ImmutableRuleTable } from '../platform/db/schema.ts';
import type { Selector } from './selectors.ts';

/** A stored rule, selectors parsed. */
export interface StoredImmutableRule {
  readonly id: number;
  readonly projectId: number;
  readonly priority: number;
  readonly disabled: boolean;
  readonly tagSelectors: Selector[];
  readonly repositorySelectors: Selector[];
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** What a rule is made of, as the service validated it. */
export interface ImmutableRuleFields {
  readonly priority: number;
  readonly disabled: boolean;
  readonly tagSelectors: readonly Selector[];
  readonly repositorySelectors: readonly Selector[];
}

export type ImmutableRuleSortKey = 'id' | 'priority';

function toRule(row: Selectable<ImmutableRuleTable>): StoredImmutableRule {
  return {
    id: Number(row.id),
    projectId: Number(row.project_id),
    priority: Number(row.priority),
    disabled: Number(row.disabled) === 1,
    tagSelectors: JSON.parse(row.tag_selectors) as Selector[],
    repositorySelectors: ((JSON.parse(row.scope_selectors) as { repository?: Selector[] }).repository ?? []) as Selector[],
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function columns(fields: ImmutableRuleFields) {
  return {
    priority: fields.priority,
    disabled: fields.disabled ? 1 : 0,
    tag_selectors: JSON.stringify(fields.tagSelectors),
    scope_selectors: JSON.stringify({ repository: fields.repositorySelectors }),
  };
}

export class ImmutabilityStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /** Every rule of the project, oldest first. */
  async rulesOf(projectId: number): Promise<StoredImmutableRule[]> {
    const rows = await this.#db.selectFrom('immutable_rules').selectAll().where('project_id', '=', projectId).orderBy('id').execute();
    return rows.map(toRule);
  }

  async count(projectId: number): Promise<number> {
    const row = await this.#db
      .selectFrom('immutable_rules')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('project_id', '=', projectId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async list(projectId: number, sort: readonly { key: ImmutableRuleSortKey; desc: boolean }[], offset: number, limit: number): Promise<StoredImmutableRule[]> {
    let query = this.#db.selectFrom('immutable_rules').selectAll().where('project_id', '=', projectId);
    for (const s of sort) query = query.orderBy(s.key, s.desc ? 'desc' : 'asc');
    if (!sort.some((s) => s.key === 'id')) query = query.orderBy('id');
    const rows = await query.offset(offset).limit(limit).execute();
    return rows.map(toRule);
  }

  async get(projectId: number, id: number): Promise<StoredImmutableRule | undefined> {
    const row = await this.#db.selectFrom('immutable_rules').selectAll().where('project_id', '=', projectId).where('id', '=', id).executeTakeFirst();
    return row ? toRule(row) : undefined;
  }

  /**
   * Adds a rule. `check` sees the project's other rules inside the transaction and throws to
   * refuse (the rule limit, duplicates); the project row is locked first, so two concurrent
   * writers of one project's rules check one after the other.
   */
  async create(projectId: number, fields: ImmutableRuleFields, now: number, check: (others: StoredImmutableRule[]) => void): Promise<StoredImmutableRule> {
    return this.#db.transaction().execute(async (trx) => {
      check(await this.#lockAndList(trx, projectId));
      const row = await trx
        .insertInto('immutable_rules')
        .values({ project_id: projectId, ...columns(fields), created_at: now, updated_at: now })
        .returningAll()
        .executeTakeFirstOrThrow();
      return toRule(row);
    });
  }

  /** Replaces a rule's fields; undefined when the project has no such rule. `check` as in create(), without the rule itself. */
  async update(projectId: number, id: number, fields: ImmutableRuleFields, now: number, check: (others: StoredImmutableRule[]) => void): Promise<StoredImmutableRule | undefined> {
    return this.#db.transaction().execute(async (trx) => {
      const rules = await this.#lockAndList(trx, projectId);
      if (!rules.some((r) => r.id === id)) return undefined;
      check(rules.filter((r) => r.id !== id));
      const row = await trx
        .updateTable('immutable_rules')
        .set({ ...columns(fields), updated_at: now })
        .where('project_id', '=', projectId)
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirst();
      return row ? toRule(row) : undefined;
    });
  }

  /** Takes the project row's write lock (a no-op update: portable), then reads its rules. */
  async #lockAndList(trx: Kysely<Database>, projectId: number): Promise<StoredImmutableRule[]> {
    await trx
      .updateTable('projects')
      .set((eb) => ({ updated_at: eb.ref('updated_at') }))
      .where('id', '=', projectId)
      .execute();
    const rows = await trx.selectFrom('immutable_rules').selectAll().where('project_id', '=', projectId).orderBy('id').execute();
    return rows.map(toRule);
  }

  async delete(projectId: number, id: number): Promise<boolean> {
    const result = await this.#db.deleteFrom('immutable_rules').where('project_id', '=', projectId).where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
}
