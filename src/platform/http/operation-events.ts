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
const operationProjects = new WeakMap<FastifyRequest, string>();

/**
 * Names the project an operation belongs to when its path does not (robots live under /robots,
 * their project is in the body or the stored robot): the route tells once it has authorized the
 * operation on that project, so the entry lands in the project's log.
 */
export function noteOperationProject(request: FastifyRequest, project: string): void {
  operationProjects.set(request, project);
}

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
    const status = reply.statusCode;
    // A create names what it made by its Location (projects/7, robots/12): the entry names it too rather than the collection.
    const location = reply.getHeader('location');
    const created = operation === 'create' && status < 400 && typeof location === 'string' && location.startsWith(`${prefix}/`) ? location.slice(prefix.length + 1).split('?', 1)[0] : undefined;
    // The collection's path as the client wrote it (a project by name stays by name) and the new item's id.
    const resource = created !== undefined && sameCollection(created, path) ? `${path.replace(/\/+$/, '')}/${created.slice(created.lastIndexOf('/') + 1)}` : path;
    const project = operationProjects.get(request) ?? projectInPath(path) ?? projectInPath(resource);
    const reason = failureReasons.get(request);
    events.emit({
      type: 'api.operation',
      at: Date.now(),
      actor: actorOf(request),
      operation,
      resourceType: resourceTypeOf(request.routeOptions.url ?? path, prefix),
      resource: decodeSafely(resource),
      ...(project ? { project: operationProjects.has(request) ? project : decodeSafely(project) } : {}),
      method: request.method,
      result: status < 400 ? 'success' : 'failure',
      status,
      ...(status >= 400 ? { reason: reason ?? `HTTP ${status}` } : {}),
    });
  });
}

/** The project a path names (by name or id: the audit store resolves ids). */
function projectInPath(path: string): string | undefined {
  return /^projects\/([^/]+)/.exec(path)?.[1];
}

/** Whether `created` is an item of the collection `path` was posted to (members/3 of …/members, by project id or name). */
function sameCollection(created: string, path: string): boolean {
  const parent = created.slice(0, created.lastIndexOf('/'));
  return parent.slice(parent.lastIndexOf('/') + 1) === path.slice(path.lastIndexOf('/') + 1);
}

function decodeSafely(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
