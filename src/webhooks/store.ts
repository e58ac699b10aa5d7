/**
 * Webhook queries: policies, and the delivery history (executions, tasks, attempts). Writes that
 * go with a job enqueue take the caller's transaction.
 */
import { type Kysely, type Selectable, type SqlBool, sql } from 'kysely';
import { lockForUpdate } from '../platform/db/dialect.ts';
import type { Database, WebhookExecutionTable, WebhookPolicyTable, WebhookTaskTable } from '../platform/db/schema.ts';
import { type EventType, parseTargets, type PayloadFormat, targetsJson, type WebhookTarget } from './policy.ts';

export type ExecutionStatus = 'Running' | 'Success' | 'Error' | 'Stopped';
export type TaskStatus = 'Pending' | 'Running' | 'Success' | 'Error' | 'Stopped';
export const FINAL_TASK_STATUSES: readonly TaskStatus[] = ['Success', 'Error', 'Stopped'];

export interface PolicyRecord {
  readonly id: number;
  readonly projectId: number;
  readonly name: string;
  readonly description: string;
  readonly targets: readonly WebhookTarget[];
  readonly eventTypes: readonly EventType[];
  readonly enabled: boolean;
  /** The sealed secret, or null. */
  readonly sealedSecret: string | null;
  readonly creator: string;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface PolicyWrite {
  readonly name: string;
  readonly description: string;
  readonly targets: readonly WebhookTarget[];
  readonly eventTypes: readonly EventType[];
  readonly enabled: boolean;
  /** A sealed secret, null for none, undefined to keep (updates). */
  readonly sealedSecret: string | null | undefined;
}

export interface ExecutionRecord {
  readonly id: number;
  readonly policyId: number;
  readonly eventType: string;
  readonly status: ExecutionStatus;
  readonly operator: string;
  readonly payload: string;
  readonly createdAt: number;
  readonly endedAt: number | null;
}

export interface TaskRecord {
  readonly id: number;
  readonly executionId: number;
  readonly policyId: number;
  readonly address: string;
  readonly authHeader: string;
  readonly skipCertVerify: boolean;
  readonly payloadFormat: PayloadFormat;
  readonly eventType: string;
  readonly body: string;
  readonly status: TaskStatus;
  readonly statusMessage: string;
  readonly runCount: number;
  readonly jobId: number | null;
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly updatedAt: number;
  readonly endedAt: number | null;
}

export interface AttemptRecord {
  readonly taskId: number;
  readonly attempt: number;
  readonly startedAt: number;
  readonly latencyMs: number;
  readonly statusCode: number | null;
  readonly error: string | null;
}

export interface TaskCounts {
  readonly total: number;
  readonly byStatus: Readonly<Record<TaskStatus, number>>;
}

export interface LastTrigger {
  readonly policyId: number;
  readonly eventType: string;
  readonly at: number;
}

export type ExecutionSortKey = 'id' | 'start_time' | 'end_time' | 'status';

export class WebhookNameTakenError extends Error {
  constructor(name: string) {
    super(`a webhook policy named "${name}" exists in this project already`);
    this.name = 'WebhookNameTakenError';
  }
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (e?.code === '23505') return true;
  return typeof e?.message === 'string' && e.message.includes('UNIQUE constraint failed');
}

function toPolicy(row: Selectable<WebhookPolicyTable>): PolicyRecord {
  return {
    id: Number(row.id),
    projectId: Number(row.project_id),
    name: row.name,
    description: row.description,
    targets: parseTargets(row.targets),
    eventTypes: JSON.parse(row.event_types) as EventType[],
    enabled: Number(row.enabled) === 1,
    sealedSecret: row.secret,
    creator: row.creator,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function toExecution(row: Selectable<WebhookExecutionTable>): ExecutionRecord {
  return {
    id: Number(row.id),
    policyId: Number(row.policy_id),
    eventType: row.event_type,
    status: row.status as ExecutionStatus,
    operator: row.operator,
    payload: row.payload,
    createdAt: Number(row.created_at),
    endedAt: row.ended_at === null ? null : Number(row.ended_at),
  };
}

function toTask(row: Selectable<WebhookTaskTable>): TaskRecord {
  return {
    id: Number(row.id),
    executionId: Number(row.execution_id),
    policyId: Number(row.policy_id),
    address: row.address,
    authHeader: row.auth_header,
    skipCertVerify: Number(row.skip_cert_verify) === 1,
    payloadFormat: row.payload_format as PayloadFormat,
    eventType: row.event_type,
    body: row.body,
    status: row.status as TaskStatus,
    statusMessage: row.status_message,
    runCount: Number(row.run_count),
    jobId: row.job_id === null ? null : Number(row.job_id),
    createdAt: Number(row.created_at),
    startedAt: row.started_at === null ? null : Number(row.started_at),
    updatedAt: Number(row.updated_at),
    endedAt: row.ended_at === null ? null : Number(row.ended_at),
  };
}

export class WebhookStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  get db(): Kysely<Database> {
    return this.#db;
  }

  // ── policies ──────────────────────────────────────────────────────────────

  async insertPolicy(projectId: number, write: PolicyWrite, creator: string, now: number): Promise<number> {
    try {
      const row = await this.#db
        .insertInto('webhook_policies')
        .values({
          project_id: projectId,
          name: write.name,
          description: write.description,
          targets: targetsJson(write.targets),
          event_types: JSON.stringify(write.eventTypes),
          enabled: write.enabled ? 1 : 0,
          secret: write.sealedSecret ?? null,
          creator,
          created_at: now,
          updated_at: now,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      return Number(row.id);
    } catch (err) {
      if (isUniqueViolation(err)) throw new WebhookNameTakenError(write.name);
      throw err;
    }
  }

  async updatePolicy(id: number, write: PolicyWrite, now: number): Promise<boolean> {
    try {
      const result = await this.#db
        .updateTable('webhook_policies')
        .set({
          name: write.name,
          description: write.description,
          targets: targetsJson(write.targets),
          event_types: JSON.stringify(write.eventTypes),
          enabled: write.enabled ? 1 : 0,
          ...(write.sealedSecret !== undefined ? { secret: write.sealedSecret } : {}),
          updated_at: now,
        })
        .where('id', '=', id)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    } catch (err) {
      if (isUniqueViolation(err)) throw new WebhookNameTakenError(write.name);
      throw err;
    }
  }

  async deletePolicy(id: number): Promise<boolean> {
    const result = await this.#db.deleteFrom('webhook_policies').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async policy(id: number): Promise<PolicyRecord | undefined> {
    const row = await this.#db.selectFrom('webhook_policies').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toPolicy(row) : undefined;
  }

  async countPolicies(projectId: number, name?: { exact?: string; fuzzy?: string }): Promise<number> {
    let query = this.#db
      .selectFrom('webhook_policies')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('project_id', '=', projectId);
    if (name?.exact !== undefined) query = query.where('name', '=', name.exact);
    if (name?.fuzzy !== undefined) query = query.where(containsName(name.fuzzy));
    return Number((await query.executeTakeFirstOrThrow()).n);
  }

  async listPolicies(projectId: number, offset: number, limit: number, options: { name?: { exact?: string; fuzzy?: string }; desc?: boolean; sortBy?: 'id' | 'name' | 'creation_time' | 'update_time' } = {}): Promise<PolicyRecord[]> {
    let query = this.#db.selectFrom('webhook_policies').selectAll().where('project_id', '=', projectId);
    if (options.name?.exact !== undefined) query = query.where('name', '=', options.name.exact);
    if (options.name?.fuzzy !== undefined) query = query.where(containsName(options.name.fuzzy));
    const column = { id: 'id', name: 'name', creation_time: 'created_at', update_time: 'updated_at' } as const;
    const direction = options.desc ? 'desc' : 'asc';
    query = query.orderBy(column[options.sortBy ?? 'id'], direction);
    if ((options.sortBy ?? 'id') !== 'id') query = query.orderBy('id', direction);
    const rows = await query.offset(offset).limit(limit).execute();
    return rows.map(toPolicy);
  }

  /** The enabled policies of a project (what an event is matched against). */
  async enabledPolicies(projectId: number): Promise<PolicyRecord[]> {
    const rows = await this.#db.selectFrom('webhook_policies').selectAll().where('project_id', '=', projectId).where('enabled', '=', 1).orderBy('id').execute();
    return rows.map(toPolicy);
  }

  // ── executions and tasks ──────────────────────────────────────────────────

  async insertExecution(trx: Kysely<Database>, execution: { policyId: number; eventType: string; operator: string; payload: string; createdAt: number }): Promise<number> {
    const row = await trx
      .insertInto('webhook_executions')
      .values({ policy_id: execution.policyId, event_type: execution.eventType, status: 'Running', operator: execution.operator, payload: execution.payload, created_at: execution.createdAt, ended_at: null })
      .returning('id')
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  async insertTask(
    trx: Kysely<Database>,
    task: { executionId: number; policyId: number; target: WebhookTarget; eventType: string; body: string; createdAt: number },
  ): Promise<number> {
    const row = await trx
      .insertInto('webhook_tasks')
      .values({
        execution_id: task.executionId,
        policy_id: task.policyId,
        address: task.target.address,
        auth_header: task.target.authHeader,
        skip_cert_verify: task.target.skipCertVerify ? 1 : 0,
        payload_format: task.target.payloadFormat,
        event_type: task.eventType,
        body: task.body,
        status: 'Pending',
        status_message: '',
        run_count: 0,
        job_id: null,
        created_at: task.createdAt,
        started_at: null,
        updated_at: task.createdAt,
        ended_at: null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  async setTaskJob(trx: Kysely<Database>, taskId: number, jobId: number): Promise<void> {
    await trx.updateTable('webhook_tasks').set({ job_id: jobId }).where('id', '=', taskId).execute();
  }

  async task(id: number, executor: Kysely<Database> = this.#db): Promise<TaskRecord | undefined> {
    const row = await executor.selectFrom('webhook_tasks').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toTask(row) : undefined;
  }

  /**
   * Starts attempt `attempt` of a task for job `jobId`: only if the previous attempt is the last
   * one recorded, or this very job started this attempt before and died (a worker that stopped
   * or crashed mid-request). False when someone else has it.
   */
  async startAttempt(taskId: number, attempt: number, jobId: number, now: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('webhook_tasks')
      .set({ status: 'Running', run_count: attempt, job_id: jobId, updated_at: now, started_at: sql<number>`coalesce(started_at, ${sql.lit(now)})` })
      .where('id', '=', taskId)
      .where((eb) =>
        eb.or([
          eb.and([eb('status', '=', 'Pending'), eb('run_count', '=', attempt - 1)]),
          eb.and([eb('status', '=', 'Running'), eb('run_count', '=', attempt), eb('job_id', '=', jobId)]),
        ]),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Records an attempt's outcome and the task's new state, if the task is still on this attempt.
   * Returns false when it is not (the attempt was taken over).
   */
  async finishAttempt(
    trx: Kysely<Database>,
    attempt: { taskId: number; attempt: number; startedAt: number; latencyMs: number; statusCode: number | null; error: string | null },
    next: { status: TaskStatus; message: string; jobId?: number | undefined; now: number },
  ): Promise<boolean> {
    const final = FINAL_TASK_STATUSES.includes(next.status);
    const result = await trx
      .updateTable('webhook_tasks')
      .set({ status: next.status, status_message: next.message, updated_at: next.now, ...(final ? { ended_at: next.now } : {}), ...(next.jobId !== undefined ? { job_id: next.jobId } : {}) })
      .where('id', '=', attempt.taskId)
      .where('status', '=', 'Running')
      .where('run_count', '=', attempt.attempt)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return false;
    await trx
      .insertInto('webhook_attempts')
      .values({ task_id: attempt.taskId, attempt: attempt.attempt, started_at: attempt.startedAt, latency_ms: attempt.latencyMs, status_code: attempt.statusCode, error: attempt.error })
      .onConflict((oc) => oc.columns(['task_id', 'attempt']).doUpdateSet({ started_at: attempt.startedAt, latency_ms: attempt.latencyMs, status_code: attempt.statusCode, error: attempt.error }))
      .execute();
    return true;
  }

  /** Ends a task that will not be tried (again): its policy was disabled, or the delivery could not be prepared. */
  async stopTask(trx: Kysely<Database>, taskId: number, status: 'Stopped' | 'Error', message: string, now: number): Promise<boolean> {
    const result = await trx
      .updateTable('webhook_tasks')
      .set({ status, status_message: message, updated_at: now, ended_at: now })
      .where('id', '=', taskId)
      .where('status', 'in', ['Pending', 'Running'])
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Hands attempt `attempt` of a task over from job `fromJob` to `toJob`, which will make it later
   * (a deferral): the task waits as Pending. False when `fromJob` did not hold the attempt.
   */
  async deferTask(trx: Kysely<Database>, taskId: number, attempt: number, fromJob: number, toJob: number, message: string, now: number): Promise<boolean> {
    const result = await trx
      .updateTable('webhook_tasks')
      .set({ status: 'Pending', run_count: attempt - 1, job_id: toJob, status_message: message, updated_at: now })
      .where('id', '=', taskId)
      .where((eb) =>
        eb.or([
          eb.and([eb('status', '=', 'Pending'), eb('run_count', '=', attempt - 1)]),
          // A job re-run after its worker stopped mid-attempt gives its attempt back.
          eb.and([eb('status', '=', 'Running'), eb('run_count', '=', attempt), eb('job_id', '=', fromJob)]),
        ]),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Sets the execution's status from its tasks: Running while any is unfinished, then Error, Stopped or Success. */
  async settleExecution(trx: Kysely<Database>, executionId: number, now: number): Promise<void> {
    // Tasks of one execution finishing at once on PostgreSQL: the second waits here for the first
    // to commit, then sees its task finished (otherwise each sees the other unfinished, and the
    // execution would stay Running).
    await lockForUpdate(trx, trx.selectFrom('webhook_executions').select('id').where('id', '=', executionId)).execute();
    const rows = await trx.selectFrom('webhook_tasks').select(['status']).where('execution_id', '=', executionId).execute();
    const statuses = rows.map((r) => r.status as TaskStatus);
    if (statuses.some((s) => !FINAL_TASK_STATUSES.includes(s))) return;
    const status: ExecutionStatus = statuses.includes('Error') ? 'Error' : statuses.includes('Stopped') ? 'Stopped' : 'Success';
    await trx.updateTable('webhook_executions').set({ status, ended_at: now }).where('id', '=', executionId).where('status', '=', 'Running').execute();
  }

  async execution(id: number): Promise<ExecutionRecord | undefined> {
    const row = await this.#db.selectFrom('webhook_executions').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toExecution(row) : undefined;
  }

  async countExecutions(policyId: number, filter: { status?: string; eventType?: string }): Promise<number> {
    let query = this.#db
      .selectFrom('webhook_executions')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('policy_id', '=', policyId);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    if (filter.eventType !== undefined) query = query.where('event_type', '=', filter.eventType);
    return Number((await query.executeTakeFirstOrThrow()).n);
  }

  async listExecutions(policyId: number, filter: { status?: string; eventType?: string }, sort: { key: ExecutionSortKey; desc: boolean }, offset: number, limit: number): Promise<ExecutionRecord[]> {
    let query = this.#db.selectFrom('webhook_executions').selectAll().where('policy_id', '=', policyId);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    if (filter.eventType !== undefined) query = query.where('event_type', '=', filter.eventType);
    const column = { id: 'id', start_time: 'created_at', end_time: 'ended_at', status: 'status' } as const;
    const direction = sort.desc ? 'desc' : 'asc';
    query = query.orderBy(column[sort.key], direction);
    if (sort.key !== 'id') query = query.orderBy('id', direction);
    return (await query.offset(offset).limit(limit).execute()).map(toExecution);
  }

  /** Per execution, how many tasks are in each status. */
  async taskCounts(executionIds: readonly number[]): Promise<Map<number, TaskCounts>> {
    const counts = new Map<number, TaskCounts>();
    if (executionIds.length === 0) return counts;
    const rows = await this.#db
      .selectFrom('webhook_tasks')
      .select(['execution_id', 'status', (eb) => eb.fn.countAll<number | string>().as('n')])
      .where('execution_id', 'in', executionIds)
      .groupBy(['execution_id', 'status'])
      .execute();
    for (const id of executionIds) counts.set(id, { total: 0, byStatus: { Pending: 0, Running: 0, Success: 0, Error: 0, Stopped: 0 } });
    for (const row of rows) {
      const entry = counts.get(Number(row.execution_id)) as { total: number; byStatus: Record<TaskStatus, number> };
      const n = Number(row.n);
      entry.total += n;
      entry.byStatus[row.status as TaskStatus] = (entry.byStatus[row.status as TaskStatus] ?? 0) + n;
    }
    return counts;
  }

  async countTasks(executionId: number, status?: string): Promise<number> {
    let query = this.#db
      .selectFrom('webhook_tasks')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('execution_id', '=', executionId);
    if (status !== undefined) query = query.where('status', '=', status);
    return Number((await query.executeTakeFirstOrThrow()).n);
  }

  async listTasks(executionId: number, status: string | undefined, desc: boolean, offset: number, limit: number): Promise<TaskRecord[]> {
    let query = this.#db.selectFrom('webhook_tasks').selectAll().where('execution_id', '=', executionId);
    if (status !== undefined) query = query.where('status', '=', status);
    return (await query.orderBy('id', desc ? 'desc' : 'asc').offset(offset).limit(limit).execute()).map(toTask);
  }

  async attempts(taskIds: readonly number[]): Promise<Map<number, AttemptRecord[]>> {
    const byTask = new Map<number, AttemptRecord[]>();
    if (taskIds.length === 0) return byTask;
    const rows = await this.#db.selectFrom('webhook_attempts').selectAll().where('task_id', 'in', taskIds).orderBy('task_id').orderBy('attempt').execute();
    for (const id of taskIds) byTask.set(id, []);
    for (const r of rows) {
      byTask.get(Number(r.task_id))?.push({
        taskId: Number(r.task_id),
        attempt: Number(r.attempt),
        startedAt: Number(r.started_at),
        latencyMs: Number(r.latency_ms),
        statusCode: r.status_code === null ? null : Number(r.status_code),
        error: r.error,
      });
    }
    return byTask;
  }

  /** The last time each (policy, event type) of a project's policies fired. */
  async lastTriggers(projectId: number): Promise<LastTrigger[]> {
    const rows = await this.#db
      .selectFrom('webhook_executions as e')
      .innerJoin('webhook_policies as p', 'p.id', 'e.policy_id')
      .select(['e.policy_id', 'e.event_type', (eb) => eb.fn.max<number | string>('e.created_at').as('at')])
      .where('p.project_id', '=', projectId)
      .groupBy(['e.policy_id', 'e.event_type'])
      .execute();
    return rows.map((r) => ({ policyId: Number(r.policy_id), eventType: r.event_type, at: Number(r.at) }));
  }

  /**
   * Deletes finished executions that started before `before` (their tasks and attempts go with
   * them), in batches. Returns how many.
   */
  async pruneHistory(before: number): Promise<number> {
    let pruned = 0;
    for (;;) {
      const ids = await this.#db.selectFrom('webhook_executions').select('id').where('created_at', '<', before).where('status', '<>', 'Running').limit(500).execute();
      if (ids.length === 0) return pruned;
      const result = await this.#db
        .deleteFrom('webhook_executions')
        .where(
          'id',
          'in',
          ids.map((r) => Number(r.id)),
        )
        .executeTakeFirst();
      pruned += Number(result.numDeletedRows);
      if (ids.length < 500) return pruned;
    }
  }
}

/** name LIKE %text% with LIKE's wildcards in `text` taken literally. */
function containsName(text: string) {
  const pattern = `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  return sql<SqlBool>`name like ${pattern} escape '\\'`;
}
