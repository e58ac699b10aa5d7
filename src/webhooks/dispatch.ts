/**
 * From domain events to deliveries. The bus subscriber never waits: it starts an asynchronous
 * dispatch and returns, so a push is never slowed by a webhook. A dispatch matches the project's
 * enabled policies (cached per project for a few seconds, cleared when this node changes them),
 * and in one transaction per policy writes an execution, a task per target with the exact body
 * to send, and a `webhook.deliver` job per task.
 *
 * Events: /v2 pushes, pulls and deletes (of an artifact or a tag) → PUSH_ARTIFACT, PULL_ARTIFACT,
 * DELETE_ARTIFACT; artifacts deleted through /api/v2.0 → DELETE_ARTIFACT; quota.warning →
 * QUOTA_WARNING; quota.exceeded (a /v2 push or upload the quota refused) → QUOTA_EXCEED.
 */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import type { ProjectRef } from '../iam/access.ts';
import { isForeignKeyViolation } from '../platform/db/dialect.ts';
import type { Database } from '../platform/db/schema.ts';
import type { DomainEvent, EventBus, RegistryOperationEvent } from '../platform/events/bus.ts';
import type { JobQueue } from '../platform/jobs/queue.ts';
import { DELIVER_JOB, type DeliverPayload, JOB_ATTEMPTS } from './deliver.ts';
import { defaultPayload, encodeEvent, type EventData, type EventResource, type HookEvent } from './payload.ts';
import type { EventType } from './policy.ts';
import type { PolicyRecord, WebhookStore } from './store.ts';

const POLICY_CACHE_MS = 5_000;
/** Dispatches in flight past which new events are dropped (and logged): memory stays bounded under a storm. */
const MAX_PENDING_DISPATCHES = 10_000;

/** The part of a pino logger webhooks use. */
export interface WebhookLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface DispatcherDeps {
  readonly db: Kysely<Database>;
  readonly store: WebhookStore;
  readonly queue: JobQueue;
  /** Projects by name or id (a cached directory: every pull asks). */
  readonly projects: { find(nameOrId: string | number): Promise<ProjectRef | undefined> };
  /** When a repository was created (epoch ms), for the payload's date_created. */
  readonly repositoryCreatedAt: (name: string) => Promise<number | undefined>;
  /** host[:port] for resource_url: the external URL's, or the address the server listens on. */
  readonly registryHost: () => string;
  readonly log: WebhookLogger;
  readonly enabled: boolean;
  readonly now?: () => number;
}

/** What happened, as a webhook needs it, before policies are matched. */
interface Trigger {
  readonly eventType: EventType;
  readonly at: number;
  readonly operator: string;
  readonly requestId?: string | undefined;
  readonly projectName: string;
  readonly repository?: string | undefined;
  readonly digest?: string | undefined;
  readonly tag?: string | undefined;
  /** Text for custom_attributes.Details (quota events). */
  readonly details?: string | undefined;
}

/** The project of a repository: its first path component. */
export function projectOfRepository(repository: string): string | undefined {
  const slash = repository.indexOf('/');
  return slash > 0 ? repository.slice(0, slash) : undefined;
}

/**
 * host[:port] for resource_url: the external URL's host, or the address the server listens on
 * (the machine's name when it listens on every interface).
 */
export function registryHostOf(externalUrl: string, address: AddressInfo | string | null, fallbackAddr: string): string {
  if (externalUrl !== '') return new URL(externalUrl).host;
  if (address !== null && typeof address === 'object') {
    const host = address.address === '0.0.0.0' || address.address === '::' ? hostname() : address.address.includes(':') ? `[${address.address}]` : address.address;
    return `${host}:${address.port}`;
  }
  return fallbackAddr;
}

export class WebhookDispatcher {
  readonly #db: Kysely<Database>;
  readonly #store: WebhookStore;
  readonly #queue: JobQueue;
  readonly #deps: DispatcherDeps;
  readonly #now: () => number;
  readonly #log: WebhookLogger;
  readonly #policyCache = new Map<number, { until: number; policies: Promise<PolicyRecord[]> }>();
  readonly #pending = new Set<Promise<void>>();
  #dropped = 0;

  constructor(deps: DispatcherDeps) {
    this.#deps = deps;
    this.#db = deps.db;
    this.#store = deps.store;
    this.#queue = deps.queue;
    this.#now = deps.now ?? Date.now;
    this.#log = deps.log;
  }

  /** Forgets the cached policies of a project (they changed on this node). */
  forget(projectId: number): void {
    this.#policyCache.delete(projectId);
  }

  /** The enabled policies of a project, through a short cache (every pull asks). */
  #enabledPolicies(projectId: number): Promise<PolicyRecord[]> {
    const now = this.#now();
    const hit = this.#policyCache.get(projectId);
    if (hit && hit.until > now) return hit.policies;
    const policies = this.#store.enabledPolicies(projectId);
    if (this.#policyCache.size >= 10_000) this.#policyCache.clear();
    this.#policyCache.set(projectId, { until: now + POLICY_CACHE_MS, policies });
    policies.catch(() => this.#policyCache.delete(projectId));
    return policies;
  }

  /** Subscribes to the events webhooks deliver; returns the unsubscribe function. No-op when webhooks are off. */
  subscribe(events: EventBus): () => void {
    if (!this.#deps.enabled) return () => {};
    const offs = [
      events.on('registry.operation', (e) => this.#fromRegistry(e)),
      events.on('api.operation', (e) => this.#fromApi(e)),
      events.on('quota.warning', (e) => this.#fromQuota(e)),
      events.on('quota.exceeded', (e) => this.#fromQuota(e)),
    ];
    return () => {
      for (const off of offs) off();
    };
  }

  #fromRegistry(e: RegistryOperationEvent): void {
    const projectName = projectOfRepository(e.repository);
    if (!projectName) return;
    const common = { at: e.at, operator: e.actor.name, requestId: e.actor.requestId, projectName, repository: e.repository, digest: e.digest };
    if (e.result === 'success') {
      const eventType: EventType = e.operation === 'push' ? 'PUSH_ARTIFACT' : e.operation === 'pull' ? 'PULL_ARTIFACT' : 'DELETE_ARTIFACT';
      // Harbor names a pull by digest with the digest as its tag.
      const tag = e.tag ?? (e.operation === 'pull' ? e.reference : undefined);
      this.#trigger({ ...common, eventType, tag });
    }
  }

  /** Artifacts deleted through /api/v2.0 (…/repositories/{r}/artifacts/{reference}). */
  #fromApi(e: Extract<DomainEvent, { type: 'api.operation' }>): void {
    if (e.result !== 'success' || e.operation !== 'delete' || e.resourceType !== 'artifact') return;
    const match = /^projects\/([^/]+)\/repositories\/(.+)\/artifacts\/([^/]+)$/.exec(e.resource);
    if (!match) return;
    const [, projectName, encodedRepository, reference] = match as unknown as [string, string, string, string];
    let repository: string;
    try {
      repository = `${projectName}/${decodeURIComponent(encodedRepository)}`;
    } catch {
      return;
    }
    const isDigest = reference.includes(':');
    this.#trigger({
      eventType: 'DELETE_ARTIFACT',
      at: e.at,
      operator: e.actor.name,
      requestId: e.actor.requestId,
      projectName,
      repository,
      ...(isDigest ? { digest: reference } : { tag: reference }),
    });
  }

  #fromQuota(e: Extract<DomainEvent, { type: 'quota.warning' | 'quota.exceeded' }>): void {
    this.#trigger({
      eventType: e.type === 'quota.exceeded' ? 'QUOTA_EXCEED' : 'QUOTA_WARNING',
      at: e.at,
      operator: e.actor.name,
      requestId: e.actor.requestId,
      projectName: e.project,
      repository: e.repository,
      details: e.message,
    });
  }

  /** Starts a dispatch and returns at once; its failure is logged, never thrown at the emitter. */
  #trigger(trigger: Trigger): void {
    if (this.#pending.size >= MAX_PENDING_DISPATCHES) {
      if (this.#dropped++ % 1000 === 0) this.#log.warn({ component: 'webhooks', dropped: this.#dropped }, 'too many webhook events waiting to be matched; dropping events');
      return;
    }
    const pending: Promise<void> = this.#dispatch(trigger)
      .catch((err: unknown) => this.#log.error({ component: 'webhooks', err, eventType: trigger.eventType, project: trigger.projectName }, 'could not queue the webhooks of an event'))
      .finally(() => this.#pending.delete(pending));
    this.#pending.add(pending);
  }

  /** Waits for the dispatches in flight (at a graceful stop, before the database closes). */
  async drain(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  async #dispatch(trigger: Trigger): Promise<void> {
    const project = await this.#deps.projects.find(trigger.projectName);
    if (!project) return;
    const policies = (await this.#enabledPolicies(project.id)).filter((p) => p.eventTypes.includes(trigger.eventType));
    if (policies.length === 0) return;
    const event: HookEvent = {
      type: trigger.eventType,
      occurAt: trigger.at,
      operator: trigger.operator,
      requestId: trigger.requestId,
      data: await this.#eventData(trigger, project),
    };
    const payload = JSON.stringify(defaultPayload(event));
    let queued = 0;
    for (const policy of policies) {
      try {
        queued += await this.#queueDeliveries(policy, project, event, payload);
      } catch (err) {
        // The policy was deleted (on another node) since it was read: nothing to deliver for it.
        if (!isForeignKeyViolation(err)) throw err;
        this.forget(project.id);
      }
    }
    if (queued > 0) this.#queue.notifyEnqueued(DELIVER_JOB);
  }

  async #queueDeliveries(policy: PolicyRecord, project: ProjectRef, event: HookEvent, payload: string): Promise<number> {
    const now = this.#now();
    return this.#db.transaction().execute(async (trx) => {
      const executionId = await this.#store.insertExecution(trx, { policyId: policy.id, eventType: event.type, operator: event.operator, payload, createdAt: now });
      for (const target of policy.targets) {
        const { body } = encodeEvent(target.payloadFormat, event, { projectId: project.id, policyId: policy.id });
        const taskId = await this.#store.insertTask(trx, { executionId, policyId: policy.id, target, eventType: event.type, body, createdAt: now });
        const payloadOfJob: DeliverPayload = { task: taskId, attempt: 1 };
        const jobId = await this.#queue.enqueue({ kind: DELIVER_JOB, payload: payloadOfJob, maxAttempts: JOB_ATTEMPTS }, trx);
        await this.#store.setTaskJob(trx, taskId, jobId);
      }
      return policy.targets.length;
    });
  }

  async #eventData(trigger: Trigger, project: ProjectRef): Promise<EventData> {
    const data: { resources?: EventResource[]; repository?: EventData['repository']; custom_attributes?: Record<string, string> } = {};
    if (trigger.repository !== undefined) {
      const createdAt = await this.#deps.repositoryCreatedAt(trigger.repository);
      data.repository = {
        ...(createdAt !== undefined ? { date_created: Math.floor(createdAt / 1000) } : {}),
        name: trigger.repository.slice(project.name.length + 1),
        namespace: project.name,
        repo_full_name: trigger.repository,
        repo_type: project.public ? 'public' : 'private',
      };
      if (trigger.digest !== undefined || trigger.tag !== undefined) {
        const host = this.#deps.registryHost();
        const tagged = trigger.tag !== undefined && !trigger.tag.includes(':');
        const resourceUrl = tagged ? `${host}/${trigger.repository}:${trigger.tag}` : trigger.digest !== undefined ? `${host}/${trigger.repository}@${trigger.digest}` : undefined;
        data.resources = [
          {
            ...(trigger.digest !== undefined ? { digest: trigger.digest } : {}),
            ...(trigger.tag !== undefined ? { tag: trigger.tag } : {}),
            ...(resourceUrl !== undefined ? { resource_url: resourceUrl } : {}),
          },
        ];
      }
    }
    if (trigger.details !== undefined) data.custom_attributes = { Details: trigger.details };
    return data;
  }
}
