/**
 * Tag retention's queries: policies, executions and tasks, and the read of one repository's
 * artifacts for evaluation. Deleting artifacts is not done here: it goes through RegistryStore,
 * where the quota ledger releases what the project no longer references.
 *
 * A repository belongs to the project named by its first path component: repositories of project
 * `p` are those with `p/` <= name < `p0` ('0' is the byte after '/'), served by the unique index
 * on repositories.name.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../platform/db/schema.ts';
import type { StoredPolicy } from './policy.ts';

export type ExecutionStatus = 'Pending' | 'Running' | 'Success' | 'Error' | 'Stopped';
export type TaskStatus = ExecutionStatus;
export type ExecutionTrigger = 'Manual' | 'Schedule';

export const FINISHED: readonly ExecutionStatus[] = ['Success', 'Error', 'Stopped'];

export interface PolicyRecord {
  readonly id: number;
  readonly projectId: number;
  readonly policy: StoredPolicy;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface ExecutionRecord {
  readonly id: number;
  readonly policyId: number;
  readonly jobId: number | null;
  readonly status: ExecutionStatus;
  readonly trigger: ExecutionTrigger;
  readonly dryRun: boolean;
  readonly startTime: number;
  readonly endTime: number | null;
}

/** An artifact a task removed, or would remove in a dry run. */
export interface RemovedArtifactRecord {
  readonly repository: string;
  readonly digest: string;
  readonly tags: readonly string[];
}

export interface TaskRecord {
  readonly id: number;
  readonly executionId: number;
  readonly repository: string;
  readonly status: TaskStatus;
  readonly total: number;
  readonly retained: number;
  readonly removed: readonly RemovedArtifactRecord[];
  readonly startTime: number;
  readonly endTime: number | null;
}

/** One manifest of a repository as evaluation needs it. */
export interface ManifestFacts {
  readonly digest: string;
  readonly createdAt: number;
  readonly pulledAt: number | null;
  readonly subjectDigest: string | null;
}

export interface RepositoryFacts {
  readonly manifests: ManifestFacts[];
  readonly tags: Array<{ name: string; digest: string; updatedAt: number }>;
  /** Index → child manifest edges. */
  readonly children: Array<{ parent: string; child: string }>;
}

function toPolicy(row: { id: number; project_id: number; policy: string; created_at: number; updated_at: number }): PolicyRecord {
  const policy = JSON.parse(row.policy) as StoredPolicy;
  return { id: Number(row.id), projectId: Number(row.project_id), policy: { ...policy, scope: { level: 'project', ref: Number(row.project_id) } }, createdAt: Number(row.created_at), updatedAt: Number(row.updated_at) };
}

function toExecution(row: {
  id: number;
  policy_id: number;
  job_id: number | null;
  status: string;
  trigger_kind: string;
  dry_run: number;
  start_time: number;
  end_time: number | null;
}): ExecutionRecord {
  return {
    id: Number(row.id),
    policyId: Number(row.policy_id),
    jobId: row.job_id === null ? null : Number(row.job_id),
    status: row.status as ExecutionStatus,
    trigger: row.trigger_kind as ExecutionTrigger,
    dryRun: Number(row.dry_run) === 1,
    startTime: Number(row.start_time),
    endTime: row.end_time === null ? null : Number(row.end_time),
  };
}

function toTask(row: {
  id: number;
  execution_id: number;
  repository: string;
  status: string;
  total: number;
  retained: number;
  removed: string;
  start_time: number;
  end_time: number | null;
}): TaskRecord {
  return {
    id: Number(row.id),
    executionId: Number(row.execution_id),
    repository: row.repository,
    status: row.status as TaskStatus,
    total: Number(row.total),
    retained: Number(row.retained),
    removed: JSON.parse(row.removed) as RemovedArtifactRecord[],
    startTime: Number(row.start_time),
    endTime: row.end_time === null ? null : Number(row.end_time),
  };
}

const TASK_COLUMNS = ['id', 'execution_id', 'repository', 'status', 'total', 'retained', 'removed', 'start_time', 'end_time'] as const;

export class RetentionStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  get db(): Kysely<Database> {
    return this.#db;
  }

  // ── policies ─────────────────────────────────────────────────────────────

  /** Inserts the project's policy; undefined when the project already has one. */
  async insertPolicy(projectId: number, policy: StoredPolicy, now: number): Promise<number | undefined> {
    const row = await this.#db
      .insertInto('retention_policies')
      .values({ project_id: projectId, policy: JSON.stringify(policy), created_at: now, updated_at: now })
      .onConflict((oc) => oc.column('project_id').doNothing())
      .returning('id')
      .executeTakeFirst();
    return row === undefined ? undefined : Number(row.id);
  }

  async policy(id: number): Promise<PolicyRecord | undefined> {
    const row = await this.#db.selectFrom('retention_policies').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toPolicy(row) : undefined;
  }

  async policyOfProject(projectId: number): Promise<PolicyRecord | undefined> {
    const row = await this.#db.selectFrom('retention_policies').selectAll().where('project_id', '=', projectId).executeTakeFirst();
    return row ? toPolicy(row) : undefined;
  }

  async updatePolicy(id: number, policy: StoredPolicy, now: number): Promise<boolean> {
    const result = await this.#db.updateTable('retention_policies').set({ policy: JSON.stringify(policy), updated_at: now }).where('id', '=', id).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Deletes the policy with its executions and tasks. */
  async deletePolicy(id: number): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const executions = trx.selectFrom('retention_executions').select('id').where('policy_id', '=', id);
      await trx.deleteFrom('retention_tasks').where('execution_id', 'in', executions).execute();
      await trx.deleteFrom('retention_executions').where('policy_id', '=', id).execute();
      const result = await trx.deleteFrom('retention_policies').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) === 1;
    });
  }

  // ── executions ───────────────────────────────────────────────────────────

  async insertExecution(policyId: number, trigger: ExecutionTrigger, dryRun: boolean, now: number, executor: Kysely<Database> = this.#db): Promise<number> {
    const row = await executor
      .insertInto('retention_executions')
      .values({ policy_id: policyId, job_id: null, status: 'Pending', trigger_kind: trigger, dry_run: dryRun ? 1 : 0, start_time: now, end_time: null })
      .returning('id')
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  async setExecutionJob(id: number, jobId: number, executor: Kysely<Database> = this.#db): Promise<void> {
    await executor.updateTable('retention_executions').set({ job_id: jobId }).where('id', '=', id).execute();
  }

  async execution(id: number): Promise<ExecutionRecord | undefined> {
    const row = await this.#db.selectFrom('retention_executions').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toExecution(row) : undefined;
  }

  /** Executions of a policy, newest first. */
  async executions(policyId: number, offset: number, limit: number): Promise<ExecutionRecord[]> {
    const rows = await this.#db.selectFrom('retention_executions').selectAll().where('policy_id', '=', policyId).orderBy('id', 'desc').offset(offset).limit(limit).execute();
    return rows.map(toExecution);
  }

  async countExecutions(policyId: number): Promise<number> {
    const row = await this.#db
      .selectFrom('retention_executions')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('policy_id', '=', policyId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Moves an unfinished execution to `status`; a finished one is left alone. Returns whether it moved. */
  async setExecutionStatus(id: number, status: ExecutionStatus, now: number): Promise<boolean> {
    const finished = FINISHED.includes(status);
    const result = await this.#db
      .updateTable('retention_executions')
      .set({ status, ...(finished ? { end_time: now } : {}) })
      .where('id', '=', id)
      .where('status', 'not in', FINISHED)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  // ── tasks ────────────────────────────────────────────────────────────────

  async insertTask(executionId: number, repository: string, now: number): Promise<number> {
    const row = await this.#db
      .insertInto('retention_tasks')
      .values({ execution_id: executionId, repository, status: 'Running', total: 0, retained: 0, removed: '[]', log: '', start_time: now, end_time: null })
      .returning('id')
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  async updateTask(
    id: number,
    fields: { status?: TaskStatus; total?: number; retained?: number; removed?: readonly RemovedArtifactRecord[]; log?: string; endTime?: number },
  ): Promise<void> {
    await this.#db
      .updateTable('retention_tasks')
      .set({
        ...(fields.status !== undefined ? { status: fields.status } : {}),
        ...(fields.total !== undefined ? { total: fields.total } : {}),
        ...(fields.retained !== undefined ? { retained: fields.retained } : {}),
        ...(fields.removed !== undefined ? { removed: JSON.stringify(fields.removed) } : {}),
        ...(fields.log !== undefined ? { log: fields.log } : {}),
        ...(fields.endTime !== undefined ? { end_time: fields.endTime } : {}),
      })
      .where('id', '=', id)
      .execute();
  }

  /** Marks the tasks an interrupted attempt left unfinished. */
  async closeUnfinishedTasks(executionId: number, status: TaskStatus, note: string, now: number): Promise<number> {
    const rows = await this.#db.selectFrom('retention_tasks').select(['id', 'log']).where('execution_id', '=', executionId).where('status', 'in', ['Pending', 'Running']).execute();
    for (const row of rows) await this.updateTask(Number(row.id), { status, log: `${row.log}${note}\n`, endTime: now });
    return rows.length;
  }

  async tasks(executionId: number, offset: number, limit: number): Promise<TaskRecord[]> {
    const rows = await this.#db.selectFrom('retention_tasks').select(TASK_COLUMNS).where('execution_id', '=', executionId).orderBy('id').offset(offset).limit(limit).execute();
    return rows.map(toTask);
  }

  async countTasks(executionId: number): Promise<number> {
    const row = await this.#db
      .selectFrom('retention_tasks')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('execution_id', '=', executionId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async task(executionId: number, id: number): Promise<(TaskRecord & { log: string }) | undefined> {
    const row = await this.#db
      .selectFrom('retention_tasks')
      .select([...TASK_COLUMNS, 'log'])
      .where('execution_id', '=', executionId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? { ...toTask(row), log: row.log } : undefined;
  }

  // ── what a run reads ─────────────────────────────────────────────────────

  /** The project's repositories that hold at least one manifest, by name. */
  async repositoriesOf(projectName: string): Promise<Array<{ id: number; name: string }>> {
    const rows = await this.#db
      .selectFrom('repositories as r')
      .select(['r.id', 'r.name'])
      .where('r.name', '>=', `${projectName}/`)
      .where('r.name', '<', `${projectName}0`)
      .where((eb) => eb.exists(eb.selectFrom('manifests as m').select('m.digest').whereRef('m.repository_id', '=', 'r.id')))
      .orderBy('r.name')
      .execute();
    return rows.map((r) => ({ id: Number(r.id), name: r.name }));
  }

  /** Everything about one repository's manifests and tags that evaluation needs. */
  async repositoryFacts(repositoryId: number): Promise<RepositoryFacts> {
    const [manifests, tags, children] = await Promise.all([
      this.#db.selectFrom('manifests').select(['digest', 'created_at', 'pulled_at', 'subject_digest']).where('repository_id', '=', repositoryId).execute(),
      this.#db.selectFrom('tags').select(['name', 'digest', 'updated_at']).where('repository_id', '=', repositoryId).orderBy('name').execute(),
      this.#db
        .selectFrom('manifest_references')
        .select(['parent_digest', 'child_digest'])
        .where('repository_id', '=', repositoryId)
        .where('child_kind', '=', 'manifest')
        .execute(),
    ]);
    return {
      manifests: manifests.map((m) => ({ digest: m.digest, createdAt: Number(m.created_at), pulledAt: m.pulled_at === null ? null : Number(m.pulled_at), subjectDigest: m.subject_digest })),
      tags: tags.map((t) => ({ name: t.name, digest: t.digest, updatedAt: Number(t.updated_at) })),
      children: children.map((c) => ({ parent: c.parent_digest, child: c.child_digest })),
    };
  }

  /** The tags now pointing at a manifest, sorted (checked again right before a deletion). */
  async tagsOf(repositoryId: number, digest: string): Promise<string[]> {
    const rows = await this.#db.selectFrom('tags').select('name').where('repository_id', '=', repositoryId).where('digest', '=', digest).orderBy('name').execute();
    return rows.map((r) => r.name);
  }

  async manifestExists(repositoryId: number, digest: string): Promise<boolean> {
    const row = await this.#db.selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).where('digest', '=', digest).executeTakeFirst();
    return row !== undefined;
  }

  /** Digests of the manifests whose subject is `digest` (signatures, SBOMs …). */
  async accessoriesOf(repositoryId: number, digest: string): Promise<string[]> {
    const rows = await this.#db.selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).where('subject_digest', '=', digest).execute();
    return rows.map((r) => r.digest);
  }

  async childrenOf(repositoryId: number, digest: string): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('manifest_references')
      .select('child_digest')
      .where('repository_id', '=', repositoryId)
      .where('parent_digest', '=', digest)
      .where('child_kind', '=', 'manifest')
      .execute();
    return rows.map((r) => r.child_digest);
  }

  async parentsOf(repositoryId: number, digest: string): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('manifest_references')
      .select('parent_digest')
      .where('repository_id', '=', repositoryId)
      .where('child_digest', '=', digest)
      .where('child_kind', '=', 'manifest')
      .execute();
    return rows.map((r) => r.parent_digest);
  }
}
