/**
 * Harbor's webhook API (swagger group `webhook`) under /projects/{project_name_or_id}/webhook:
 * policies (list, create, get, update, delete), a policy's executions, their tasks and a task's
 * log, the last trigger of each policy and event type, and the supported event types and formats.
 * Also the connection test: Harbor's older POST …/webhook/policies/test (a policy in the body,
 * nothing saved) and Berth's POST …/webhook/policies/{id}/test (a saved policy, signed with its
 * secret). Authorised on the project resource `notification-policy`: read and list for project
 * admins and maintainers, create, update, delete and the tests for project admins.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl, ProjectRef } from '../iam/access.ts';
import type { Action } from '../iam/rbac.ts';
import { badRequest, exactValue, pageParams, parseQ, setPageHeaders } from '../platform/http/api.ts';
import { IsResourceNameHeader, ProjectParams, requireProjectParam } from '../projects/params.ts';
import type { ProjectService } from '../projects/service.ts';
import { EVENT_TYPES, NOTIFY_TYPES, PAYLOAD_FORMATS, type PolicyInput } from './policy.ts';
import {
  EventsJson,
  ExecutionJson,
  ExecutionParams,
  errorResponses,
  executionJson,
  iso,
  LastTriggerJson,
  ListQuery,
  PolicyBody,
  PolicyJson,
  PolicyParams,
  policyJson,
  TaskJson,
  TaskParams,
  TestBody,
  TestResultsJson,
  taskJson,
  testResultsJson,
} from './schemas.ts';
import type { TestResult, WebhookService } from './service.ts';
import type { ExecutionSortKey } from './store.ts';

export interface WebhookRoutesDeps {
  readonly webhooks: WebhookService;
  readonly access: AccessControl;
  readonly projects: ProjectService;
}

function numericId(raw: string, what: string): number {
  if (!/^[0-9]{1,15}$/.test(raw) || Number(raw) <= 0) throw badRequest(`${what} must be a positive whole number, got "${raw}"`);
  return Number(raw);
}

/** Checks the q= keys a listing allows. */
function queryTerms(q: string | undefined, allowed: readonly string[]) {
  const terms = parseQ(q);
  for (const key of terms.keys()) if (!allowed.includes(key)) throw badRequest(`q: unknown key "${key}"; use ${allowed.join(', ')}`);
  return terms;
}

/** `sort=key` or `sort=-key` (descending), among `allowed`. */
function sortParam<K extends string>(sort: string | undefined, allowed: readonly K[], fallback: { key: K; desc: boolean }): { key: K; desc: boolean } {
  if (sort === undefined || sort.trim() === '') return fallback;
  const text = sort.trim();
  const desc = text.startsWith('-');
  const key = desc ? text.slice(1) : text;
  if (!(allowed as readonly string[]).includes(key)) throw badRequest(`sort: unknown key "${key}"; use ${allowed.join(', ')} (with - for descending)`);
  return { key: key as K, desc };
}

function operatorOf(request: FastifyRequest): string {
  const s = request.subject;
  return s.kind === 'anonymous' ? 'anonymous' : s.name;
}

function asInput(body: PolicyBody | TestBody): PolicyInput {
  return { ...body, name: body.name ?? 'test' };
}

// ── routes ────────────────────────────────────────────────────────────────

export async function webhookRoutes(api: FastifyInstance, deps: WebhookRoutesDeps): Promise<void> {
  const { webhooks } = deps;
  const tags = ['Webhook'];
  const project = (request: FastifyRequest, nameOrId: string, action: Action): Promise<ProjectRef> =>
    requireProjectParam(request, deps, nameOrId, 'notification-policy', action);
  const base = '/projects/:project_name_or_id/webhook';

  api.get<{ Params: Static<typeof ProjectParams>; Querystring: Static<typeof ListQuery> }>(
    `${base}/policies`,
    {
      schema: {
        tags,
        operationId: 'ListWebhookPoliciesOfProject',
        summary: "List a project's webhook policies (q=name=… or name=~…, sort=name|creation_time|update_time, paging)",
        params: ProjectParams,
        headers: IsResourceNameHeader,
        querystring: ListQuery,
        response: { 200: Type.Array(PolicyJson), ...errorResponses },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name_or_id, 'list');
      const page = pageParams(request.query);
      const terms = queryTerms(request.query.q, ['name']);
      const nameTerm = terms.get('name');
      const name = nameTerm === undefined ? undefined : nameTerm.kind === 'fuzzy' ? { fuzzy: nameTerm.value } : { exact: exactValue(terms, 'name') as string };
      const sort = sortParam(request.query.sort, ['id', 'name', 'creation_time', 'update_time'] as const, { key: 'id', desc: false });
      const result = await webhooks.listPolicies(p, page.offset, page.pageSize, { ...(name ? { name } : {}), sortBy: sort.key, desc: sort.desc });
      setPageHeaders(request, reply, page, result.total);
      return result.items.map(policyJson);
    },
  );

  api.post<{ Params: Static<typeof ProjectParams>; Body: PolicyBody }>(
    `${base}/policies`,
    {
      schema: {
        tags,
        operationId: 'CreateWebhookPolicyOfProject',
        summary: 'Create a webhook policy: targets, event types, payload format, optional signing secret',
        params: ProjectParams,
        headers: IsResourceNameHeader,
        body: PolicyBody,
        response: { 201: Type.Null({ description: 'Location names the policy' }), ...errorResponses },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name_or_id, 'create');
      const id = await webhooks.createPolicy(p, request.body, operatorOf(request));
      return reply.code(201).header('location', `/api/v2.0/projects/${encodeURIComponent(request.params.project_name_or_id)}/webhook/policies/${id}`).send();
    },
  );

  api.post<{ Params: Static<typeof ProjectParams>; Body: TestBody }>(
    `${base}/policies/test`,
    {
      schema: {
        tags,
        operationId: 'TestWebhookPolicyOfProject',
        summary: 'Send a test request to the targets of a policy given in the body (nothing is saved); 400 when a target does not answer 2xx',
        params: ProjectParams,
        headers: IsResourceNameHeader,
        body: TestBody,
        response: { 200: TestResultsJson, ...errorResponses },
      },
    },
    async (request) => {
      const p = await project(request, request.params.project_name_or_id, 'create');
      return testOutcome(await webhooks.testPolicyBody(p, asInput(request.body), operatorOf(request)));
    },
  );

  api.get<{ Params: Static<typeof PolicyParams> }>(
    `${base}/policies/:webhook_policy_id`,
    {
      schema: {
        tags,
        operationId: 'GetWebhookPolicyOfProject',
        summary: 'Get a webhook policy (never its secret)',
        params: PolicyParams,
        headers: IsResourceNameHeader,
        response: { 200: PolicyJson, ...errorResponses },
      },
    },
    async (request) => {
      const id = numericId(request.params.webhook_policy_id, 'webhook_policy_id');
      const p = await project(request, request.params.project_name_or_id, 'read');
      return policyJson(await webhooks.policy(p, id));
    },
  );

  api.put<{ Params: Static<typeof PolicyParams>; Body: PolicyBody }>(
    `${base}/policies/:webhook_policy_id`,
    {
      schema: {
        tags,
        operationId: 'UpdateWebhookPolicyOfProject',
        summary: 'Replace a webhook policy (an absent secret is kept, "" removes it)',
        params: PolicyParams,
        headers: IsResourceNameHeader,
        body: PolicyBody,
        response: { 200: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const id = numericId(request.params.webhook_policy_id, 'webhook_policy_id');
      const p = await project(request, request.params.project_name_or_id, 'update');
      await webhooks.updatePolicy(p, id, request.body);
      return reply.code(200).send();
    },
  );

  api.delete<{ Params: Static<typeof PolicyParams> }>(
    `${base}/policies/:webhook_policy_id`,
    {
      schema: {
        tags,
        operationId: 'DeleteWebhookPolicyOfProject',
        summary: 'Delete a webhook policy with its delivery history (deliveries still queued are dropped)',
        params: PolicyParams,
        headers: IsResourceNameHeader,
        response: { 200: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const id = numericId(request.params.webhook_policy_id, 'webhook_policy_id');
      const p = await project(request, request.params.project_name_or_id, 'delete');
      await webhooks.deletePolicy(p, id);
      return reply.code(200).send();
    },
  );

  api.post<{ Params: Static<typeof PolicyParams> }>(
    `${base}/policies/:webhook_policy_id/test`,
    {
      schema: {
        tags,
        operationId: 'TestSavedWebhookPolicyOfProject',
        summary: 'Berth: send a test request to the targets of a saved policy, signed with its secret; 400 when a target does not answer 2xx',
        params: PolicyParams,
        headers: IsResourceNameHeader,
        response: { 200: TestResultsJson, ...errorResponses },
      },
    },
    async (request) => {
      const id = numericId(request.params.webhook_policy_id, 'webhook_policy_id');
      const p = await project(request, request.params.project_name_or_id, 'update');
      return testOutcome(await webhooks.testPolicy(p, id, operatorOf(request)));
    },
  );

  api.get<{ Params: Static<typeof PolicyParams>; Querystring: Static<typeof ListQuery> }>(
    `${base}/policies/:webhook_policy_id/executions`,
    {
      schema: {
        tags,
        operationId: 'ListExecutionsOfWebhookPolicy',
        summary: 'Delivery history of a policy: an execution per event (q=status=…,event_type=…; sort=[-]id|start_time|end_time|status; paging)',
        params: PolicyParams,
        headers: IsResourceNameHeader,
        querystring: ListQuery,
        response: { 200: Type.Array(ExecutionJson), ...errorResponses },
      },
    },
    async (request, reply) => {
      const id = numericId(request.params.webhook_policy_id, 'webhook_policy_id');
      const p = await project(request, request.params.project_name_or_id, 'read');
      const page = pageParams(request.query);
      const terms = queryTerms(request.query.q, ['status', 'event_type']);
      const status = exactValue(terms, 'status');
      const eventType = exactValue(terms, 'event_type');
      const sort = sortParam<ExecutionSortKey>(request.query.sort, ['id', 'start_time', 'end_time', 'status'], { key: 'id', desc: true });
      const result = await webhooks.executions(p, id, { ...(status !== undefined ? { status } : {}), ...(eventType !== undefined ? { eventType } : {}) }, sort, page.offset, page.pageSize);
      setPageHeaders(request, reply, page, result.total);
      return result.items.map(executionJson);
    },
  );

  api.get<{ Params: Static<typeof ExecutionParams>; Querystring: Static<typeof ListQuery> }>(
    `${base}/policies/:webhook_policy_id/executions/:execution_id/tasks`,
    {
      schema: {
        tags,
        operationId: 'ListTasksOfWebhookExecution',
        summary: 'The deliveries of an execution, one per target, with every attempt (q=status=…; sort=[-]id; paging)',
        params: ExecutionParams,
        headers: IsResourceNameHeader,
        querystring: ListQuery,
        response: { 200: Type.Array(TaskJson), ...errorResponses },
      },
    },
    async (request, reply) => {
      const id = numericId(request.params.webhook_policy_id, 'webhook_policy_id');
      const executionId = numericId(request.params.execution_id, 'execution_id');
      const p = await project(request, request.params.project_name_or_id, 'read');
      const page = pageParams(request.query);
      const status = exactValue(queryTerms(request.query.q, ['status']), 'status');
      const sort = sortParam(request.query.sort, ['id'] as const, { key: 'id', desc: false });
      const result = await webhooks.tasks(p, id, executionId, status, sort.desc, page.offset, page.pageSize);
      setPageHeaders(request, reply, page, result.total);
      return result.items.map(taskJson);
    },
  );

  api.get<{ Params: Static<typeof TaskParams> }>(
    `${base}/policies/:webhook_policy_id/executions/:execution_id/tasks/:task_id/log`,
    {
      schema: {
        tags,
        operationId: 'GetLogsOfWebhookTask',
        summary: 'The log of a delivery: each attempt with its answer and latency',
        params: TaskParams,
        headers: IsResourceNameHeader,
        response: { 200: Type.String({ description: 'text/plain' }), ...errorResponses },
      },
    },
    async (request, reply) => {
      const id = numericId(request.params.webhook_policy_id, 'webhook_policy_id');
      const executionId = numericId(request.params.execution_id, 'execution_id');
      const taskId = numericId(request.params.task_id, 'task_id');
      const p = await project(request, request.params.project_name_or_id, 'read');
      const text = await webhooks.taskLog(p, id, executionId, taskId);
      return reply.header('content-type', 'text/plain; charset=utf-8').send(text);
    },
  );

  api.get<{ Params: Static<typeof ProjectParams> }>(
    `${base}/lasttrigger`,
    {
      schema: {
        tags,
        operationId: 'LastTrigger',
        summary: 'When each policy of the project last fired, per event type',
        params: ProjectParams,
        headers: IsResourceNameHeader,
        response: { 200: Type.Array(LastTriggerJson), ...errorResponses },
      },
    },
    async (request) => {
      const p = await project(request, request.params.project_name_or_id, 'read');
      const { policies, triggers } = await webhooks.lastTriggers(p);
      const last = new Map(triggers.map((t) => [`${t.policyId}\u0000${t.eventType}`, t.at]));
      return policies.flatMap((policy) =>
        policy.eventTypes.map((eventType) => {
          const at = last.get(`${policy.id}\u0000${eventType}`);
          return { policy_name: policy.name, enabled: policy.enabled, event_type: eventType, creation_time: iso(policy.createdAt), ...(at !== undefined ? { last_trigger_time: iso(at) } : {}) };
        }),
      );
    },
  );

  api.get<{ Params: Static<typeof ProjectParams> }>(
    `${base}/events`,
    {
      schema: {
        tags,
        operationId: 'GetSupportedEventTypes',
        summary: 'The event types, notify types and payload formats a policy may use',
        params: ProjectParams,
        headers: IsResourceNameHeader,
        response: { 200: EventsJson, ...errorResponses },
      },
    },
    async (request) => {
      await project(request, request.params.project_name_or_id, 'read');
      return { event_type: [...EVENT_TYPES], notify_type: [...NOTIFY_TYPES], payload_formats: NOTIFY_TYPES.map((t) => ({ notify_type: t, formats: [...PAYLOAD_FORMATS] })) };
    },
  );
}

/** 200 with each target's answer when all answered 2xx; otherwise 400 saying which did not and why. */
function testOutcome(results: readonly TestResult[]): Static<typeof TestResultsJson> {
  const failed = results.filter((r) => !r.ok);
  if (failed.length > 0) throw badRequest(`the test request failed: ${failed.map((r) => `${r.address}: ${r.error ?? 'no answer'}`).join('; ')}`);
  return testResultsJson(results);
}
