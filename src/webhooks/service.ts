/**
 * Webhooks: per-project policies and their delivery history, the test requests, and the composition
 * of the rest: the dispatcher (domain events → executions, tasks and jobs; dispatch.ts) and the
 * deliverer (the `webhook.deliver` job; deliver.ts).
 */
import type { Kysely } from 'kysely';
import type { ProjectRef } from '../iam/access.ts';
import type { Database } from '../platform/db/schema.ts';
import type { EventBus } from '../platform/events/bus.ts';
import { ApiError, badRequest, conflict, notFound } from '../platform/http/api.ts';
import type { JobQueue } from '../platform/jobs/queue.ts';
import type { JobContext } from '../platform/jobs/worker.ts';
import { type DeliverPayload, WebhookDeliverer } from './deliver.ts';
import { postWebhook } from './delivery.ts';
import { WebhookDispatcher, type WebhookLogger } from './dispatch.ts';
import { deliveryHeaders, encodeEvent, type HookEvent } from './payload.ts';
import { type NormalizedPolicy, normalizePolicy, type PolicyInput, TEST_EVENT_TYPE, type WebhookTarget, WebhookPolicyError } from './policy.ts';
import type { SecretBox } from './secrets.ts';
import {
  type AttemptRecord,
  type ExecutionRecord,
  type ExecutionSortKey,
  type LastTrigger,
  type PolicyRecord,
  type TaskCounts,
  type TaskRecord,
  WebhookNameTakenError,
  type WebhookStore,
} from './store.ts';

export { DELIVER_JOB, type DeliverPayload } from './deliver.ts';
export { projectOfRepository, registryHostOf, type WebhookLogger } from './dispatch.ts';

export const PRUNE_HISTORY_JOB = 'webhooks.prune-history';
const DAY_MS = 86_400_000;

export interface WebhookSettings {
  readonly enabled: boolean;
  readonly timeoutMs: number;
  readonly maxAttempts: number;
  readonly retryBackoffMs: number;
  readonly perTargetConcurrency: number;
  readonly historyDays: number;
}

export interface WebhookServiceDeps {
  readonly db: Kysely<Database>;
  readonly store: WebhookStore;
  readonly queue: JobQueue;
  /** Projects by name or id (a cached directory: every pull asks). */
  readonly projects: { find(nameOrId: string | number): Promise<ProjectRef | undefined> };
  /** When a repository was created (epoch ms), for the payload's date_created. */
  readonly repositoryCreatedAt: (name: string) => Promise<number | undefined>;
  readonly secrets: SecretBox;
  readonly settings: WebhookSettings;
  /** host[:port] for resource_url: the external URL's, or the address the server listens on. */
  readonly registryHost: () => string;
  readonly log: WebhookLogger;
  readonly now?: () => number;
  readonly random?: () => number;
}

export interface TestResult {
  readonly address: string;
  readonly ok: boolean;
  readonly statusCode?: number;
  readonly latencyMs: number;
  readonly error?: string;
}

export interface ExecutionView extends ExecutionRecord {
  readonly counts: TaskCounts;
}

export interface TaskView extends TaskRecord {
  readonly attempts: readonly AttemptRecord[];
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly total: number;
}

function policyError(err: unknown): never {
  if (err instanceof WebhookPolicyError) throw badRequest(err.message);
  if (err instanceof WebhookNameTakenError) throw conflict(err.message);
  throw err;
}

export class WebhookService {
  readonly #store: WebhookStore;
  readonly #deps: WebhookServiceDeps;
  readonly #settings: WebhookSettings;
  readonly #now: () => number;
  readonly #dispatcher: WebhookDispatcher;
  readonly #deliverer: WebhookDeliverer;

  constructor(deps: WebhookServiceDeps) {
    this.#deps = deps;
    this.#store = deps.store;
    this.#settings = deps.settings;
    this.#now = deps.now ?? Date.now;
    const common = { db: deps.db, store: deps.store, queue: deps.queue, ...(deps.now ? { now: deps.now } : {}) };
    this.#dispatcher = new WebhookDispatcher({
      ...common,
      projects: deps.projects,
      repositoryCreatedAt: deps.repositoryCreatedAt,
      registryHost: deps.registryHost,
      log: deps.log,
      enabled: deps.settings.enabled,
    });
    this.#deliverer = new WebhookDeliverer({ ...common, secrets: deps.secrets, settings: deps.settings, ...(deps.random ? { random: deps.random } : {}) });
  }

  // ── events and deliveries ─────────────────────────────────────────────────

  /** Subscribes to the events webhooks deliver; returns the unsubscribe function. No-op when webhooks are off. */
  subscribe(events: EventBus): () => void {
    return this.#dispatcher.subscribe(events);
  }

  /** Waits for the dispatches in flight (at a graceful stop, before the database closes). */
  drain(): Promise<void> {
    return this.#dispatcher.drain();
  }

  /** The `webhook.deliver` job handler. */
  deliver(payload: DeliverPayload, context: JobContext): Promise<void> {
    return this.#deliverer.deliver(payload, context);
  }

  /** Stops the deliverer's wake-up timers (the workers stop on their own). */
  stop(): void {
    this.#deliverer.stop();
  }

  // ── policies ──────────────────────────────────────────────────────────────

  async listPolicies(
    project: ProjectRef,
    offset: number,
    limit: number,
    options: { name?: { exact?: string; fuzzy?: string }; desc?: boolean; sortBy?: 'id' | 'name' | 'creation_time' | 'update_time' },
  ): Promise<Page<PolicyRecord>> {
    const [items, total] = await Promise.all([this.#store.listPolicies(project.id, offset, limit, options), this.#store.countPolicies(project.id, options.name)]);
    return { items, total };
  }

  /** The policy, if it belongs to the project; 404 otherwise. */
  async policy(project: ProjectRef, id: number): Promise<PolicyRecord> {
    const policy = await this.#store.policy(id);
    if (!policy || policy.projectId !== project.id) throw notFound(`webhook policy ${id} not found in project ${project.name}`);
    return policy;
  }

  #checkBody(project: ProjectRef, input: PolicyInput, creating: boolean): NormalizedPolicy {
    if (input.project_id !== undefined && input.project_id !== 0 && input.project_id !== project.id) {
      throw badRequest(`project_id ${input.project_id} is not the project of the path (${project.id})`);
    }
    try {
      return normalizePolicy(input, creating);
    } catch (err) {
      return policyError(err);
    }
  }

  async createPolicy(project: ProjectRef, input: PolicyInput, creator: string): Promise<number> {
    const policy = this.#checkBody(project, input, true);
    try {
      const id = await this.#store.insertPolicy(project.id, { ...policy, sealedSecret: policy.secret ? this.#deps.secrets.seal(policy.secret) : null }, creator, this.#now());
      this.#dispatcher.forget(project.id);
      return id;
    } catch (err) {
      return policyError(err);
    }
  }

  async updatePolicy(project: ProjectRef, id: number, input: PolicyInput): Promise<void> {
    await this.policy(project, id);
    if (input.id !== undefined && input.id !== 0 && input.id !== id) throw badRequest(`the body is webhook policy ${input.id}, the path policy ${id}`);
    const policy = this.#checkBody(project, input, false);
    const sealedSecret = policy.secret === undefined ? undefined : policy.secret === null ? null : this.#deps.secrets.seal(policy.secret);
    try {
      if (!(await this.#store.updatePolicy(id, { ...policy, sealedSecret }, this.#now()))) throw notFound(`webhook policy ${id} not found in project ${project.name}`);
    } catch (err) {
      policyError(err);
    }
    this.#dispatcher.forget(project.id);
  }

  async deletePolicy(project: ProjectRef, id: number): Promise<void> {
    await this.policy(project, id);
    await this.#store.deletePolicy(id);
    this.#dispatcher.forget(project.id);
  }

  // ── history ───────────────────────────────────────────────────────────────

  async executions(
    project: ProjectRef,
    policyId: number,
    filter: { status?: string; eventType?: string },
    sort: { key: ExecutionSortKey; desc: boolean },
    offset: number,
    limit: number,
  ): Promise<Page<ExecutionView>> {
    await this.policy(project, policyId);
    const [items, total] = await Promise.all([this.#store.listExecutions(policyId, filter, sort, offset, limit), this.#store.countExecutions(policyId, filter)]);
    const counts = await this.#store.taskCounts(items.map((e) => e.id));
    return { items: items.map((e) => ({ ...e, counts: counts.get(e.id) as TaskCounts })), total };
  }

  async #execution(project: ProjectRef, policyId: number, executionId: number): Promise<ExecutionRecord> {
    await this.policy(project, policyId);
    const execution = await this.#store.execution(executionId);
    if (!execution || execution.policyId !== policyId) throw notFound(`execution ${executionId} of webhook policy ${policyId} not found`);
    return execution;
  }

  async tasks(project: ProjectRef, policyId: number, executionId: number, status: string | undefined, desc: boolean, offset: number, limit: number): Promise<Page<TaskView>> {
    await this.#execution(project, policyId, executionId);
    const [items, total] = await Promise.all([this.#store.listTasks(executionId, status, desc, offset, limit), this.#store.countTasks(executionId, status)]);
    const attempts = await this.#store.attempts(items.map((t) => t.id));
    return { items: items.map((t) => ({ ...t, attempts: attempts.get(t.id) ?? [] })), total };
  }

  /** A task's log: a line per attempt, then where the task stands. */
  async taskLog(project: ProjectRef, policyId: number, executionId: number, taskId: number): Promise<string> {
    await this.#execution(project, policyId, executionId);
    const task = await this.#store.task(taskId);
    if (!task || task.executionId !== executionId) throw notFound(`task ${taskId} of execution ${executionId} not found`);
    const attempts = (await this.#store.attempts([taskId])).get(taskId) ?? [];
    const lines = [`${new Date(task.createdAt).toISOString()} ${task.eventType} to ${task.address} (${task.payloadFormat} payload)`];
    for (const a of attempts) {
      const answer = a.statusCode === null ? 'no answer' : `HTTP ${a.statusCode}`;
      lines.push(`${new Date(a.startedAt).toISOString()} attempt ${a.attempt}: ${answer} in ${a.latencyMs} ms${a.error ? ` (${a.error})` : ''}`);
    }
    lines.push(`${new Date(task.updatedAt).toISOString()} ${task.status}${task.statusMessage ? `: ${task.statusMessage}` : ''}`);
    return `${lines.join('\n')}\n`;
  }

  async lastTriggers(project: ProjectRef): Promise<{ policies: PolicyRecord[]; triggers: LastTrigger[] }> {
    const [policies, triggers] = await Promise.all([this.#store.listPolicies(project.id, 0, 10_000), this.#store.lastTriggers(project.id)]);
    return { policies, triggers };
  }

  // ── test requests ─────────────────────────────────────────────────────────

  /** Sends a TEST_ENDPOINT event to each target at once and reports each answer (nothing is recorded). */
  async testTargets(project: ProjectRef, targets: readonly WebhookTarget[], secret: string | null, operator: string, policyId = 0): Promise<TestResult[]> {
    const event: HookEvent = {
      type: TEST_EVENT_TYPE,
      occurAt: this.#now(),
      operator,
      data: { custom_attributes: { message: `a test request of a webhook policy of project ${project.name}` } },
    };
    return Promise.all(
      targets.map(async (target) => {
        const { body, contentType } = encodeEvent(target.payloadFormat, event, { projectId: project.id, policyId });
        const outcome = await postWebhook({
          address: target.address,
          body,
          headers: deliveryHeaders({ contentType, authHeader: target.authHeader, eventType: TEST_EVENT_TYPE, delivery: 'test', attempt: 1 }, secret, body),
          skipCertVerify: target.skipCertVerify,
          timeoutMs: this.#settings.timeoutMs,
        });
        return { address: target.address, ...outcome };
      }),
    );
  }

  async testPolicyBody(project: ProjectRef, input: PolicyInput, operator: string): Promise<TestResult[]> {
    const policy = this.#checkBody(project, input, true);
    return this.testTargets(project, policy.targets, policy.secret ?? null, operator);
  }

  async testPolicy(project: ProjectRef, id: number, operator: string): Promise<TestResult[]> {
    const policy = await this.policy(project, id);
    let secret: string | null = null;
    if (policy.sealedSecret !== null) {
      try {
        secret = this.#deps.secrets.open(policy.sealedSecret);
      } catch (err) {
        throw new ApiError('PRECONDITION', (err as Error).message);
      }
    }
    return this.testTargets(project, policy.targets, secret, operator, policy.id);
  }

  /** The daily prune of old delivery history. */
  async pruneHistory(log: (message: string) => void): Promise<void> {
    if (this.#settings.historyDays === 0) return log('webhook history is kept (webhooks.historyDays is 0)');
    const pruned = await this.#store.pruneHistory(this.#now() - this.#settings.historyDays * DAY_MS);
    log(`deleted ${pruned} webhook executions older than ${this.#settings.historyDays} days`);
  }
}

