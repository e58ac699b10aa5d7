/**
 * Typed in-process domain events. Capabilities emit what happened (an artifact pushed, a project
 * changed, a login failed); the audit log, webhooks and later scanning and replication subscribe.
 * Emitting never waits for a subscriber and never fails the emitter: a subscriber that needs to do
 * slow work (a database write, an HTTP call) queues it and returns.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';

/** Who did it, and from where. */
export interface Actor {
  /** User or robot name; "anonymous" when nobody logged in; "system" for background work. */
  readonly name: string;
  readonly kind: 'user' | 'robot' | 'anonymous' | 'system';
  readonly address?: string;
  readonly userAgent?: string;
  readonly requestId?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling, as the auth layer established it; set on /v2 and /api requests when known. */
    actor: Actor | undefined;
  }
}

export type OperationResult = 'success' | 'failure';

/** A /v2 operation on an artifact: a manifest pushed, pulled or deleted, or a tag deleted. */
export interface RegistryOperationEvent {
  readonly type: 'registry.operation';
  readonly at: number;
  readonly actor: Actor;
  readonly operation: 'push' | 'pull' | 'delete';
  /** `tag` for a tag deleted through /v2/<name>/manifests/<tag>; `artifact` otherwise. */
  readonly resourceType: 'artifact' | 'tag';
  readonly repository: string;
  /** The reference the client used: a tag or a digest. */
  readonly reference: string;
  readonly digest?: string;
  readonly tag?: string;
  readonly mediaType?: string;
  readonly size?: number;
  readonly result: OperationResult;
  /** The HTTP status the client got. */
  readonly status: number;
  /** Why it failed: the error code and message. */
  readonly reason?: string;
}

/** A state change through the management API (a project, member, robot, user, policy …). */
export interface ApiOperationEvent {
  readonly type: 'api.operation';
  readonly at: number;
  readonly actor: Actor;
  readonly operation: 'create' | 'update' | 'delete';
  /** Harbor's resource type, from the route: project, member, robot, user, quota, repository, artifact, tag … */
  readonly resourceType: string;
  /** What was changed, as a path: "projects/team/members/3", "users/7" … */
  readonly resource: string;
  /** The project the resource belongs to, when the path names one. */
  readonly project?: string;
  readonly method: string;
  readonly result: OperationResult;
  readonly status: number;
  readonly reason?: string;
}

/** A password or secret checked (cache misses only: a cached login is not a new one). */
export interface LoginEvent {
  readonly type: 'login';
  readonly at: number;
  /** The name that tried, whether or not it exists. */
  readonly actor: Actor;
  readonly result: OperationResult;
  readonly reason?: string;
}

export interface QuotaEvent {
  readonly type: 'quota.warning' | 'quota.exceeded';
  readonly at: number;
  readonly actor: Actor;
  readonly project: string;
  readonly repository?: string;
  readonly used: number;
  readonly hard: number;
  readonly message: string;
}

/** A background job (GC, retention …) that finished. */
export interface JobFinishedEvent {
  readonly type: 'job.finished';
  readonly at: number;
  readonly actor: Actor;
  readonly jobId: number;
  readonly kind: string;
  readonly status: string;
  readonly error?: string;
}

export type DomainEvent = RegistryOperationEvent | ApiOperationEvent | LoginEvent | QuotaEvent | JobFinishedEvent;
export type DomainEventType = DomainEvent['type'];

type Handler<E> = (event: E) => void;

export class EventBus {
  readonly #handlers = new Map<string, Array<Handler<DomainEvent>>>();
  readonly #log: FastifyBaseLogger | undefined;

  constructor(options: { log?: FastifyBaseLogger } = {}) {
    this.#log = options.log;
  }

  /** Subscribes to one event type, or to every event with "*". Returns the unsubscribe function. */
  on<T extends DomainEventType>(type: T | '*', handler: Handler<Extract<DomainEvent, { type: T }>>): () => void {
    const list = this.#handlers.get(type) ?? [];
    list.push(handler as Handler<DomainEvent>);
    this.#handlers.set(type, list);
    return () => {
      const current = this.#handlers.get(type) ?? [];
      this.#handlers.set(
        type,
        current.filter((h) => h !== handler),
      );
    };
  }

  /** Hands the event to every subscriber, synchronously; a subscriber that throws is logged and skipped. */
  emit(event: DomainEvent): void {
    for (const key of [event.type, '*']) {
      for (const handler of this.#handlers.get(key) ?? []) {
        try {
          handler(event);
        } catch (err) {
          this.#log?.error({ err, event: event.type }, 'an event subscriber failed');
        }
      }
    }
  }

  /** Whether anybody listens: lets hot paths skip building events nobody wants. */
  hasSubscribers(): boolean {
    for (const list of this.#handlers.values()) if (list.length > 0) return true;
    return false;
  }
}

/** The actor of a request: what the auth layer set, with the client's address, agent and request id. */
export function actorOf(request: FastifyRequest): Actor {
  const known = request.actor;
  const userAgent = request.headers['user-agent'];
  return {
    name: known?.name ?? 'anonymous',
    kind: known?.kind ?? 'anonymous',
    address: request.ip,
    ...(typeof userAgent === 'string' ? { userAgent } : {}),
    requestId: request.id,
  };
}

export const SYSTEM_ACTOR: Actor = Object.freeze({ name: 'system', kind: 'system' });
