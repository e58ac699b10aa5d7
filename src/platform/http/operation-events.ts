/**
 * Announces every state change made through the management API (POST, PUT, PATCH, DELETE) as an
 * `api.operation` event, with the outcome the client saw: the audit log records them all without
 * each route having to remember to.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { actorOf, type EventBus } from '../events/bus.ts';

const OPERATIONS: Record<string, 'create' | 'update' | 'delete'> = { POST: 'create', PUT: 'update', PATCH: 'update', DELETE: 'delete' };

/** Harbor's resource type names for our path segments. */
const RESOURCE_TYPES: Record<string, string> = {
  projects: 'project',
  members: 'member',
  metadatas: 'project_metadata',
  robots: 'robot',
  users: 'user',
  password: 'user',
  sysadmin: 'user',
  quotas: 'quota',
  repositories: 'repository',
  artifacts: 'artifact',
  tags: 'tag',
  retentions: 'retention',
  executions: 'retention_execution',
  immutabletagrules: 'immutable_rule',
  gc: 'garbage_collection',
  schedule: 'schedule',
  jobservice: 'jobservice',
  jobs: 'job',
  queues: 'job_queue',
  policies: 'webhook_policy',
};

const failureReasons = new WeakMap<FastifyRequest, string>();

/** The resource type of a route pattern: the last fixed segment that names something. */
export function resourceTypeOf(routeUrl: string, prefix: string): string {
  const segments = routeUrl
    .slice(prefix.length)
    .split('/')
    .filter((s) => s !== '' && !s.startsWith(':') && s !== '*');
  for (let i = segments.length - 1; i >= 0; i--) {
    const type = RESOURCE_TYPES[segments[i] as string];
    if (type) return type;
  }
  return segments[segments.length - 1] ?? 'unknown';
}

/** Registers the hooks on an API scope mounted at `prefix` (e.g. /api/v2.0). */
export function announceApiOperations(api: FastifyInstance, events: EventBus, prefix: string): void {
  api.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode >= 400 && OPERATIONS[request.method] && typeof payload === 'string') {
      try {
        const message = (JSON.parse(payload) as { errors?: Array<{ code?: string; message?: string }> }).errors?.[0];
        if (message) failureReasons.set(request, `${message.code ?? ''}: ${message.message ?? ''}`);
      } catch {
        // Not our error shape; the status says enough.
      }
    }
    return payload;
  });
  api.addHook('onResponse', async (request, reply) => {
    const operation = OPERATIONS[request.method];
    if (!operation) return;
    const path = (request.url.split('?', 1)[0] ?? '').slice(prefix.length).replace(/^\/+/, '');
    const project = /^projects\/([^/]+)/.exec(path)?.[1];
    const status = reply.statusCode;
    const reason = failureReasons.get(request);
    events.emit({
      type: 'api.operation',
      at: Date.now(),
      actor: actorOf(request),
      operation,
      resourceType: resourceTypeOf(request.routeOptions.url ?? path, prefix),
      resource: decodeSafely(path),
      ...(project ? { project: decodeSafely(project) } : {}),
      method: request.method,
      result: status < 400 ? 'success' : 'failure',
      status,
      ...(status >= 400 ? { reason: reason ?? `HTTP ${status}` } : {}),
    });
  });
}

function decodeSafely(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
