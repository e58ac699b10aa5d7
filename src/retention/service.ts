/**
 * Tag retention's use cases: a project's policy (Harbor's RetentionPolicy, one per project, its
 * id in the project's `retention_id` metadata), its cron schedule, and its executions.
 *
 * A run is a job (`retention.run`) on the job service, manual or fired by the policy's schedule
 * (`retention.schedule`, which only enqueues a run). The dedupe key `retention:policy:<id>` keeps
 * one run per policy at a time, on every node. What a run does is run.ts. Authorisation is the
 * routes' job; what reaches this service has been allowed.
 */
import type { Kysely } from 'kysely';
import type { ProjectRef } from '../iam/access.ts';
import type { Database } from '../platform/db/schema.ts';
import { ApiError, badRequest, conflict, notFound } from '../platform/http/api.ts';
import type { JobService } from '../platform/jobs/service.ts';
import type { JobContext } from '../platform/jobs/worker.ts';
import type { RegistryStore } from '../registry/store.ts';
import type { ImmutableRule } from './immutability.ts';
import { normalizePolicy, type PolicyInput, RetentionPolicyError, type StoredPolicy } from './policy.ts';
import { RetentionRun } from './run.ts';
import { type ExecutionRecord, type ExecutionTrigger, FINISHED, type PolicyRecord, RetentionStore, type TaskRecord } from './store.ts';

export const RETENTION_RUN_JOB = 'retention.run';
export const RETENTION_SCHEDULE_JOB = 'retention.schedule';
export const RETENTION_ID = 'retention_id';

/** The schedule of a policy in the job service's scheduler. */
export const scheduleName = (policyId: number) => `retention.policy.${policyId}`;
const dedupeKey = (policyId: number) => `retention:policy:${policyId}`;

/** Attempts of a run: a failed attempt is retried (a run is idempotent: it re-evaluates what is left). */
const RUN_ATTEMPTS = 3;

/** What retention asks of the projects capability (ProjectService implements it). */
export interface RetentionProjects {
  find(nameOrId: string | number): Promise<ProjectRef | undefined>;
  setSystemMetadata(project: ProjectRef, key: string, value: string | undefined): Promise<void>;
}

export interface RetentionServiceOptions {
  readonly db: Kysely<Database>;
  /** Artifacts are deleted through it, which releases the project's quota. */
  readonly registry: RegistryStore;
  readonly projects: RetentionProjects;
  readonly jobs: JobService;
  /** The project's tag immutability rules: artifacts carrying an immutable tag are never removed. */
  readonly immutableRules?: (projectId: number) => Promise<readonly ImmutableRule[]>;
  readonly now?: () => number;
  /** Awaited before each repository of a run (tests use it to hold a run in the middle). */
  readonly beforeRepository?: (repository: string, signal: AbortSignal) => Promise<void>;
}

export interface Paged<T> {
  readonly total: number;
  readonly items: T[];
}

function policyError(err: unknown): never {
  if (err instanceof RetentionPolicyError) throw new ApiError(err.code === 'conflict' ? 'CONFLICT' : 'BAD_REQUEST', err.message);
  throw err;
}

export class RetentionService {
  readonly #store: RetentionStore;
  readonly #db: Kysely<Database>;
  readonly #projects: RetentionProjects;
  readonly #jobs: JobService;
  readonly #now: () => number;
  readonly #run: RetentionRun;

  constructor(options: RetentionServiceOptions) {
    this.#db = options.db;
    this.#store = new RetentionStore(options.db);
    this.#projects = options.projects;
    this.#jobs = options.jobs;
    this.#now = options.now ?? Date.now;
    this.#run = new RetentionRun({
      store: this.#store,
      registry: options.registry,
      projects: options.projects,
      immutableRules: options.immutableRules ?? (async () => []),
      now: this.#now,
      ...(options.beforeRepository ? { beforeRepository: options.beforeRepository } : {}),
    });
  }

  // ── policies ─────────────────────────────────────────────────────────────

  /** Creates the project's policy and its schedule; 409 when the project has one already. */
  async createPolicy(project: ProjectRef, input: PolicyInput): Promise<number> {
    let policy: StoredPolicy;
    try {
      policy = normalizePolicy(input, this.#now());
    } catch (err) {
      policyError(err);
    }
    const id = await this.#store.insertPolicy(project.id, policy, this.#now());
    if (id === undefined) {
      const existing = await this.#store.policyOfProject(project.id);
      throw conflict(`project ${project.name} already has the retention policy ${existing?.id ?? ''}; change it with PUT /retentions/${existing?.id ?? '{id}'}`);
    }
    try {
      await this.#projects.setSystemMetadata(project, RETENTION_ID, String(id));
      await this.#syncSchedule(id, policy);
    } catch (err) {
      await this.#store.deletePolicy(id);
      throw err;
    }
    return id;
  }

  async policy(id: number): Promise<PolicyRecord> {
    const record = await this.#store.policy(id);
    if (!record) throw notFound(`retention policy ${id} not found`);
    return record;
  }

  /** Replaces the rules and the trigger; the scope (the project) cannot change. */
  async updatePolicy(id: number, input: PolicyInput): Promise<void> {
    const current = await this.policy(id);
    if (input.id !== undefined && input.id !== id) throw badRequest(`the body is retention policy ${input.id}, the path policy ${id}`);
    let policy: StoredPolicy;
    try {
      policy = normalizePolicy(input, this.#now());
    } catch (err) {
      policyError(err);
    }
    if (policy.scope.ref !== current.projectId) throw badRequest(`retention policy ${id} belongs to project ${current.projectId}; scope.ref cannot change to ${policy.scope.ref}`);
    if (!(await this.#store.updatePolicy(id, policy, this.#now()))) throw notFound(`retention policy ${id} not found`);
    await this.#syncSchedule(id, policy);
  }

  /** Deletes the policy, its schedule and its history; stops a run in progress. */
  async deletePolicy(id: number): Promise<void> {
    const current = await this.policy(id);
    await this.#jobs.scheduler.remove(scheduleName(id));
    for (const execution of await this.#store.executions(id, 0, 1000)) {
      if (!FINISHED.includes(execution.status) && execution.jobId !== null) await this.#jobs.queue.cancel(execution.jobId);
    }
    if (!(await this.#store.deletePolicy(id))) throw notFound(`retention policy ${id} not found`);
    const project = await this.#projects.find(current.projectId);
    if (project) await this.#projects.setSystemMetadata(project, RETENTION_ID, undefined);
  }

  async #syncSchedule(id: number, policy: StoredPolicy): Promise<void> {
    const cron = policy.trigger.settings.cron;
    if (cron === '') await this.#jobs.scheduler.remove(scheduleName(id));
    else await this.#jobs.scheduler.upsert({ name: scheduleName(id), cron, kind: RETENTION_SCHEDULE_JOB, payload: { policyId: id } });
  }

  // ── executions ───────────────────────────────────────────────────────────

  /**
   * Starts a run of the policy: an execution row and its job, in one transaction. 409 while
   * another run of the policy is queued or running (the job's dedupe key says so).
   */
  async trigger(policyId: number, dryRun: boolean, trigger: ExecutionTrigger): Promise<number> {
    await this.policy(policyId);
    const executionId = await this.#db.transaction().execute(async (trx) => {
      const id = await this.#store.insertExecution(policyId, trigger, dryRun, this.#now(), trx);
      const jobId = await this.#jobs.queue.enqueue({ kind: RETENTION_RUN_JOB, payload: { executionId: id }, dedupeKey: dedupeKey(policyId), maxAttempts: RUN_ATTEMPTS }, trx);
      const job = await trx.selectFrom('jobs').select('payload').where('id', '=', jobId).executeTakeFirstOrThrow();
      const running = (JSON.parse(job.payload) as { executionId?: number }).executionId;
      if (running !== id) throw conflict(`retention policy ${policyId} is running already (execution ${running}); stop it or wait for it to finish`);
      await this.#store.setExecutionJob(id, jobId, trx);
      return id;
    });
    this.#jobs.queue.notifyEnqueued(RETENTION_RUN_JOB);
    return executionId;
  }

  async #execution(policyId: number, executionId: number): Promise<ExecutionRecord> {
    const execution = await this.#store.execution(executionId);
    if (!execution || execution.policyId !== policyId) throw notFound(`execution ${executionId} of retention policy ${policyId} not found`);
    return this.#reconcile(execution);
  }

  /**
   * An unfinished execution whose job ended without saying so (its worker died on the last
   * attempt, or it was cancelled before it started) is closed with what the job says.
   */
  async #reconcile(execution: ExecutionRecord): Promise<ExecutionRecord> {
    if (FINISHED.includes(execution.status) || execution.jobId === null) return execution;
    const job = await this.#jobs.queue.get(execution.jobId);
    if (job && (job.status === 'queued' || job.status === 'running')) return execution;
    const status = job?.status === 'cancelled' ? 'Stopped' : 'Error';
    const now = this.#now();
    if (await this.#store.setExecutionStatus(execution.id, status, now)) {
      await this.#store.closeUnfinishedTasks(execution.id, status, `the run ended without finishing this repository (job ${job?.status ?? 'gone'})`, now);
    }
    return (await this.#store.execution(execution.id)) ?? execution;
  }

  async execution(policyId: number, executionId: number): Promise<ExecutionRecord> {
    return this.#execution(policyId, executionId);
  }

  /** Executions of the policy, newest first. */
  async executions(policyId: number, offset: number, limit: number): Promise<Paged<ExecutionRecord>> {
    const [total, rows] = await Promise.all([this.#store.countExecutions(policyId), this.#store.executions(policyId, offset, limit)]);
    const items: ExecutionRecord[] = [];
    for (const row of rows) items.push(await this.#reconcile(row));
    return { total, items };
  }

  /**
   * Stops a run: a queued one at once, a running one at its next check (between repositories and
   * between deletions). Stopping a finished run does nothing.
   */
  async stop(policyId: number, executionId: number): Promise<void> {
    const execution = await this.#execution(policyId, executionId);
    if (FINISHED.includes(execution.status)) return;
    const job = execution.jobId === null ? undefined : await this.#jobs.queue.cancel(execution.jobId);
    if (job?.status !== 'running') {
      const now = this.#now();
      await this.#store.setExecutionStatus(execution.id, 'Stopped', now);
      await this.#store.closeUnfinishedTasks(execution.id, 'Stopped', 'stopped', now);
    }
  }

  async tasks(policyId: number, executionId: number, offset: number, limit: number): Promise<Paged<TaskRecord>> {
    await this.#execution(policyId, executionId);
    const [total, items] = await Promise.all([this.#store.countTasks(executionId), this.#store.tasks(executionId, offset, limit)]);
    return { total, items };
  }

  async taskLog(policyId: number, executionId: number, taskId: number): Promise<string> {
    await this.#execution(policyId, executionId);
    const task = await this.#store.task(executionId, taskId);
    if (!task) throw notFound(`task ${taskId} of execution ${executionId} not found`);
    return task.log;
  }

  // ── job handlers ─────────────────────────────────────────────────────────

  /** The `retention.run` job: runs one execution. */
  async execute(executionId: number, context: JobContext): Promise<void> {
    await this.#run.execute(executionId, context);
  }

  /** The `retention.schedule` job: starts a run of the policy, unless one is in progress. */
  async runScheduled(policyId: number, context: JobContext): Promise<void> {
    if (!(await this.#store.policy(policyId))) {
      await this.#jobs.scheduler.remove(scheduleName(policyId));
      context.log(`retention policy ${policyId} no longer exists; its schedule was removed`);
      return;
    }
    try {
      const executionId = await this.trigger(policyId, false, 'Schedule');
      context.log(`started execution ${executionId} of retention policy ${policyId}`);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'CONFLICT') return context.log(`skipped: ${err.message}`);
      throw err;
    }
  }
}
