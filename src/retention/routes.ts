/**
 * Harbor's tag retention API (/api/v2.0/retentions…): the metadata of templates and selectors,
 * one policy per project, runs (dry or real) with their executions and per-repository tasks, and
 * a task's log. Every route needs a login; a policy's routes authorise on its project's
 * `tag-retention` resource through AccessControl (read, create, update, delete, list; running and
 * stopping a run is `operate`).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl } from '../iam/access.ts';
import type { Action } from '../iam/rbac.ts';
import { badRequest, pageParams, setPageHeaders } from '../platform/http/api.ts';
import { RETENTION_METADATA } from './policy.ts';
import type { RetentionService } from './service.ts';
import type { ExecutionRecord, PolicyRecord, TaskRecord } from './store.ts';

export interface RetentionRoutesDeps {
  readonly retention: RetentionService;
  readonly access: AccessControl;
}

// ── schemas ───────────────────────────────────────────────────────────────

const SelectorBody = Type.Object(
  {
    kind: Type.String({ maxLength: 64, description: 'doublestar (Harbor) or regex (Berth: an anchored regular expression)' }),
    decoration: Type.String({ maxLength: 64, description: 'Tags: matches or excludes; repositories: repoMatches or repoExcludes' }),
    pattern: Type.String({ maxLength: 4096, description: 'At most 256 characters; empty matches everything' }),
    extras: Type.Optional(
      Type.Union([Type.String({ maxLength: 1024 }), Type.Object({ untagged: Type.Optional(Type.Boolean()) }, { additionalProperties: false })], {
        description: 'JSON text {"untagged": true|false}: whether untagged artifacts count as matching',
      }),
    ),
  },
  { additionalProperties: false },
);

const RuleBody = Type.Object(
  {
    id: Type.Optional(Type.Integer({ description: 'Ignored: rules are numbered by position' })),
    priority: Type.Optional(Type.Integer()),
    disabled: Type.Optional(Type.Boolean()),
    action: Type.Optional(Type.String({ maxLength: 64, description: 'Only "retain"' })),
    template: Type.String({ maxLength: 64, description: 'latestPushedK, latestPulledN, nDaysSinceLastPush, nDaysSinceLastPull or always' }),
    params: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'The template parameter, keyed by the template: {"latestPushedK": 10}' })),
    tag_selectors: Type.Optional(Type.Array(SelectorBody, { maxItems: 16 })),
    scope_selectors: Type.Optional(Type.Record(Type.String(), Type.Array(SelectorBody, { maxItems: 16 }), { description: '{"repository": [selector]}' })),
  },
  { additionalProperties: false },
);

const PolicyBody = Type.Object(
  {
    id: Type.Optional(Type.Integer()),
    algorithm: Type.Optional(Type.String({ maxLength: 16, description: 'Only "or"' })),
    rules: Type.Array(RuleBody, { maxItems: 100, description: 'At most 15' }),
    trigger: Type.Optional(
      Type.Object(
        {
          kind: Type.Optional(Type.String({ maxLength: 32, description: 'Only "Schedule"' })),
          settings: Type.Optional(Type.Object({ cron: Type.Optional(Type.String({ maxLength: 256, description: 'Cron in UTC (6 fields, seconds first, or 5); empty: run on demand only' })) }, { additionalProperties: false })),
          references: Type.Optional(Type.Unknown({ description: 'Ignored' })),
        },
        { additionalProperties: false },
      ),
    ),
    scope: Type.Object({ level: Type.String({ maxLength: 32, description: 'Only "project"' }), ref: Type.Integer({ description: 'The project id' }) }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);

const SelectorJson = Type.Object({ kind: Type.String(), decoration: Type.String(), pattern: Type.String(), extras: Type.Optional(Type.String()) });

const PolicyJson = Type.Object({
  id: Type.Integer(),
  algorithm: Type.String(),
  rules: Type.Array(
    Type.Object({
      id: Type.Integer(),
      priority: Type.Integer(),
      disabled: Type.Boolean(),
      action: Type.String(),
      template: Type.String(),
      params: Type.Record(Type.String(), Type.Unknown()),
      tag_selectors: Type.Array(SelectorJson),
      scope_selectors: Type.Object({ repository: Type.Array(SelectorJson) }),
    }),
  ),
  trigger: Type.Object({ kind: Type.String(), settings: Type.Object({ cron: Type.String() }), references: Type.Object({}) }),
  scope: Type.Object({ level: Type.String(), ref: Type.Integer() }),
});

const ExecutionJson = Type.Object({
  id: Type.Integer(),
  policy_id: Type.Integer(),
  start_time: Type.String({ format: 'date-time' }),
  end_time: Type.Optional(Type.String({ format: 'date-time' })),
  status: Type.String({ description: 'Pending, Running, Success, Error or Stopped' }),
  trigger: Type.String({ description: 'Manual or Schedule' }),
  dry_run: Type.Boolean(),
});

const TaskJson = Type.Object({
  id: Type.Integer(),
  execution_id: Type.Integer(),
  repository: Type.String(),
  job_id: Type.String(),
  status: Type.String(),
  status_code: Type.Integer(),
  status_revision: Type.Integer(),
  start_time: Type.String({ format: 'date-time' }),
  end_time: Type.Optional(Type.String({ format: 'date-time' })),
  total: Type.Integer(),
  retained: Type.Integer(),
  removed: Type.Array(Type.Object({ repository: Type.String(), digest: Type.String(), tags: Type.Array(Type.String()) }), {
    description: 'Berth: the artifacts this task removed, or in a dry run would remove',
  }),
});

const MetadataJson = Type.Object({
  templates: Type.Array(
    Type.Object({
      rule_template: Type.String(),
      display_text: Type.String(),
      action: Type.String(),
      params: Type.Array(Type.Object({ type: Type.String(), unit: Type.String(), required: Type.Boolean() })),
    }),
  ),
  scope_selectors: Type.Array(Type.Object({ display_text: Type.String(), kind: Type.String(), decorations: Type.Array(Type.String()) })),
  tag_selectors: Type.Array(Type.Object({ display_text: Type.String(), kind: Type.String(), decorations: Type.Array(Type.String()) })),
});

const ErrorsJson = Type.Object({ errors: Type.Array(Type.Object({ code: Type.String(), message: Type.String() })) });
const errorResponses = { 400: ErrorsJson, 401: ErrorsJson, 403: ErrorsJson, 404: ErrorsJson, 409: ErrorsJson };

const IdParams = Type.Object({ id: Type.String({ description: 'The retention policy id' }) });
const ExecutionParams = Type.Object({ id: Type.String(), eid: Type.String({ description: 'The execution id' }) });
const TaskParams = Type.Object({ id: Type.String(), eid: Type.String(), tid: Type.String({ description: 'The task id' }) });
const PageQuery = Type.Object({ page: Type.Optional(Type.String()), page_size: Type.Optional(Type.String()) });
const TriggerBody = Type.Object({ dry_run: Type.Optional(Type.Boolean({ description: 'Only report what would be removed' })) }, { additionalProperties: false });
const ActionBody = Type.Object({ action: Type.String({ maxLength: 32, description: 'Only "stop"' }) }, { additionalProperties: false });

type PolicyBody = Static<typeof PolicyBody>;

// ── mapping ───────────────────────────────────────────────────────────────

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function policyJson(record: PolicyRecord): Static<typeof PolicyJson> {
  const { policy } = record;
  return {
    id: record.id,
    algorithm: policy.algorithm,
    rules: policy.rules.map((r) => ({ ...r, tag_selectors: r.tag_selectors.map((s) => ({ ...s, extras: typeof s.extras === 'string' ? s.extras : s.extras === undefined ? undefined : JSON.stringify(s.extras) })) })) as Static<
      typeof PolicyJson
    >['rules'],
    trigger: { kind: policy.trigger.kind, settings: { cron: policy.trigger.settings.cron }, references: {} },
    scope: { level: 'project', ref: record.projectId },
  };
}

export function executionJson(e: ExecutionRecord): Static<typeof ExecutionJson> {
  return {
    id: e.id,
    policy_id: e.policyId,
    start_time: iso(e.startTime),
    ...(e.endTime !== null ? { end_time: iso(e.endTime) } : {}),
    status: e.status,
    trigger: e.trigger,
    dry_run: e.dryRun,
  };
}

/** Harbor's job status codes: pending 0, running 2, every final status 3. */
const STATUS_CODE: Record<string, number> = { Pending: 0, Running: 2, Success: 3, Error: 3, Stopped: 3 };

export function taskJson(t: TaskRecord, jobId: number | null): Static<typeof TaskJson> {
  return {
    id: t.id,
    execution_id: t.executionId,
    repository: t.repository,
    job_id: jobId === null ? '' : String(jobId),
    status: t.status,
    status_code: STATUS_CODE[t.status] ?? 0,
    status_revision: 0,
    start_time: iso(t.startTime),
    ...(t.endTime !== null ? { end_time: iso(t.endTime) } : {}),
    total: t.total,
    retained: t.retained,
    removed: t.removed.map((r) => ({ repository: r.repository, digest: r.digest, tags: [...r.tags] })),
  };
}

function numericId(raw: string, what: string): number {
  if (!/^[0-9]{1,15}$/.test(raw) || Number(raw) <= 0) throw badRequest(`${what} must be a positive whole number, got "${raw}"`);
  return Number(raw);
}

// ── routes ────────────────────────────────────────────────────────────────

export async function retentionRoutes(api: FastifyInstance, deps: RetentionRoutesDeps): Promise<void> {
  const { retention, access } = deps;
  const tags = ['Retention'];
  // Harbor's retention API needs a login before anything is looked up.
  const loggedIn = async (request: FastifyRequest) => {
    access.requireLogin(request);
  };
  /** The policy the path names, if the caller may do `action` on tag retention in its project. */
  const policyFor = async (request: FastifyRequest, rawId: string, action: Action): Promise<PolicyRecord> => {
    const policy = await retention.policy(numericId(rawId, 'id'));
    await access.requireProject(request, policy.projectId, 'tag-retention', action);
    return policy;
  };
  const emptyBody = async (request: FastifyRequest) => {
    if (request.body === undefined || request.body === null) request.body = {};
  };

  api.get(
    '/retentions/metadatas',
    {
      onRequest: loggedIn,
      schema: { tags, operationId: 'getRentenitionMetadata', summary: 'The retention templates and selectors a policy may use', response: { 200: MetadataJson, 401: ErrorsJson } },
    },
    async () => RETENTION_METADATA,
  );

  api.post<{ Body: PolicyBody }>(
    '/retentions',
    {
      onRequest: loggedIn,
      schema: {
        tags,
        operationId: 'createRetention',
        summary: "Create a project's tag retention policy (one per project; its id becomes the project's retention_id)",
        body: PolicyBody,
        response: { 201: Type.Null({ description: 'Location names the policy' }), ...errorResponses },
      },
    },
    async (request, reply) => {
      const project = await access.requireProject(request, request.body.scope.ref, 'tag-retention', 'create');
      const id = await retention.createPolicy(project, request.body);
      return reply.code(201).header('location', `/api/v2.0/retentions/${id}`).send();
    },
  );

  api.get<{ Params: Static<typeof IdParams> }>(
    '/retentions/:id',
    { onRequest: loggedIn, schema: { tags, operationId: 'getRetention', summary: 'Get a retention policy', params: IdParams, response: { 200: PolicyJson, ...errorResponses } } },
    async (request) => policyJson(await policyFor(request, request.params.id, 'read')),
  );

  api.put<{ Params: Static<typeof IdParams>; Body: PolicyBody }>(
    '/retentions/:id',
    {
      onRequest: loggedIn,
      schema: { tags, operationId: 'updateRetention', summary: 'Replace the rules and trigger of a retention policy', params: IdParams, body: PolicyBody, response: errorResponses },
    },
    async (request, reply) => {
      const policy = await policyFor(request, request.params.id, 'update');
      await retention.updatePolicy(policy.id, request.body);
      return reply.code(200).send();
    },
  );

  api.delete<{ Params: Static<typeof IdParams> }>(
    '/retentions/:id',
    { onRequest: loggedIn, schema: { tags, operationId: 'deleteRetention', summary: 'Delete a retention policy with its schedule and history', params: IdParams, response: errorResponses } },
    async (request, reply) => {
      const policy = await policyFor(request, request.params.id, 'delete');
      await retention.deletePolicy(policy.id);
      return reply.code(200).send();
    },
  );

  api.post<{ Params: Static<typeof IdParams>; Body: Static<typeof TriggerBody> }>(
    '/retentions/:id/executions',
    {
      onRequest: loggedIn,
      preValidation: emptyBody,
      schema: {
        tags,
        operationId: 'triggerRetentionExecution',
        summary: 'Run a retention policy now (dry_run: only report what would be removed); 409 while it runs',
        params: IdParams,
        body: TriggerBody,
        response: { 201: Type.Null({ description: 'Location names the execution' }), ...errorResponses },
      },
    },
    async (request, reply) => {
      const policy = await policyFor(request, request.params.id, 'operate');
      const executionId = await retention.trigger(policy.id, request.body.dry_run === true, 'Manual');
      return reply.code(201).header('location', `/api/v2.0/retentions/${policy.id}/executions/${executionId}`).send();
    },
  );

  api.get<{ Params: Static<typeof IdParams>; Querystring: Static<typeof PageQuery> }>(
    '/retentions/:id/executions',
    {
      onRequest: loggedIn,
      schema: {
        tags,
        operationId: 'listRetentionExecutions',
        summary: 'The runs of a retention policy, newest first',
        params: IdParams,
        querystring: PageQuery,
        response: { 200: Type.Array(ExecutionJson), ...errorResponses },
      },
    },
    async (request, reply) => {
      const policy = await policyFor(request, request.params.id, 'list');
      const page = pageParams(request.query);
      const { total, items } = await retention.executions(policy.id, page.offset, page.pageSize);
      setPageHeaders(request, reply, page, total);
      return items.map(executionJson);
    },
  );

  api.patch<{ Params: Static<typeof ExecutionParams>; Body: Static<typeof ActionBody> }>(
    '/retentions/:id/executions/:eid',
    {
      onRequest: loggedIn,
      schema: { tags, operationId: 'operateRetentionExecution', summary: 'Stop a run ({"action": "stop"})', params: ExecutionParams, body: ActionBody, response: errorResponses },
    },
    async (request, reply) => {
      if (request.body.action !== 'stop') throw badRequest(`action must be "stop", not ${JSON.stringify(request.body.action)}`);
      const policy = await policyFor(request, request.params.id, 'operate');
      await retention.stop(policy.id, numericId(request.params.eid, 'eid'));
      return reply.code(200).send();
    },
  );

  api.get<{ Params: Static<typeof ExecutionParams>; Querystring: Static<typeof PageQuery> }>(
    '/retentions/:id/executions/:eid/tasks',
    {
      onRequest: loggedIn,
      schema: {
        tags,
        operationId: 'listRetentionTasks',
        summary: 'The per-repository tasks of a run: counts and the artifacts removed (or to be removed)',
        params: ExecutionParams,
        querystring: PageQuery,
        response: { 200: Type.Array(TaskJson), ...errorResponses },
      },
    },
    async (request, reply) => {
      const policy = await policyFor(request, request.params.id, 'list');
      const executionId = numericId(request.params.eid, 'eid');
      const page = pageParams(request.query);
      const execution = await retention.execution(policy.id, executionId);
      const { total, items } = await retention.tasks(policy.id, executionId, page.offset, page.pageSize);
      setPageHeaders(request, reply, page, total);
      return items.map((t) => taskJson(t, execution.jobId));
    },
  );

  api.get<{ Params: Static<typeof TaskParams> }>(
    '/retentions/:id/executions/:eid/tasks/:tid',
    {
      onRequest: loggedIn,
      schema: {
        tags,
        operationId: 'getRetentionTaskLog',
        summary: "A task's log: every artifact of the repository and what happened to it (text)",
        params: TaskParams,
        response: { 200: Type.String(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const policy = await policyFor(request, request.params.id, 'read');
      const log = await retention.taskLog(policy.id, numericId(request.params.eid, 'eid'), numericId(request.params.tid, 'tid'));
      return reply.header('content-type', 'text/plain; charset=utf-8').send(log);
    },
  );
}
