/**
 * The JSON of the webhook API: request bodies (strict: unknown fields are refused), responses in
 * Harbor's shapes (WebhookPolicy, Execution, Task, WebhookLastTrigger, SupportedWebhookEventTypes)
 * and the mapping from records to them. A policy's secret has no field in any response.
 */
import { type Static, Type } from 'typebox';
import { AUTH_HEADER_MAX, DESCRIPTION_MAX, EVENT_TYPES, MAX_TARGETS, SECRET_MAX } from './policy.ts';
import type { ExecutionView, TaskView, TestResult } from './service.ts';
import type { PolicyRecord } from './store.ts';

// ── schemas ───────────────────────────────────────────────────────────────

export const TargetBody = Type.Object(
  {
    type: Type.Optional(Type.String({ maxLength: 32, description: 'Only "http"' })),
    address: Type.String({ maxLength: 4096, description: 'An http or https URL; link-local and cloud metadata addresses are refused' }),
    auth_header: Type.Optional(Type.String({ maxLength: AUTH_HEADER_MAX, description: 'Sent as the Authorization header' })),
    skip_cert_verify: Type.Optional(Type.Boolean()),
    payload_format: Type.Optional(Type.String({ maxLength: 32, description: 'Default (Harbor\u2019s JSON) or CloudEvents' })),
  },
  { additionalProperties: false },
);

export const policyFields = {
  id: Type.Optional(Type.Integer({ description: 'Ignored on create; on update, must be the id of the path when given' })),
  description: Type.Optional(Type.String({ maxLength: DESCRIPTION_MAX })),
  project_id: Type.Optional(Type.Integer({ description: 'Ignored unless it names another project (400)' })),
  targets: Type.Array(TargetBody, { maxItems: MAX_TARGETS }),
  event_types: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64, description: EVENT_TYPES.join(', ') }),
  enabled: Type.Optional(Type.Boolean({ description: 'true by default' })),
  secret: Type.Optional(
    Type.String({
      maxLength: SECRET_MAX,
      description: 'Berth: signs each body with HMAC-SHA256 into X-Berth-Signature: sha256=<hex>. Write-only; on update, absent keeps it and "" removes it.',
    }),
  ),
  creator: Type.Optional(Type.String({ maxLength: 256, description: 'Ignored' })),
  creation_time: Type.Optional(Type.String({ maxLength: 64, description: 'Ignored' })),
  update_time: Type.Optional(Type.String({ maxLength: 64, description: 'Ignored' })),
};

export const PolicyBody = Type.Object({ name: Type.String({ maxLength: 1024 }), ...policyFields }, { additionalProperties: false });
export type PolicyBody = Static<typeof PolicyBody>;
export const TestBody = Type.Object({ name: Type.Optional(Type.String({ maxLength: 1024 })), ...policyFields }, { additionalProperties: false });
export type TestBody = Static<typeof TestBody>;

export const TargetJson = Type.Object({ type: Type.String(), address: Type.String(), auth_header: Type.String(), skip_cert_verify: Type.Boolean(), payload_format: Type.String() });
export const PolicyJson = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
  project_id: Type.Integer(),
  targets: Type.Array(TargetJson),
  event_types: Type.Array(Type.String()),
  creator: Type.String(),
  creation_time: Type.String({ format: 'date-time' }),
  update_time: Type.String({ format: 'date-time' }),
  enabled: Type.Boolean(),
  secret_set: Type.Boolean({ description: 'Berth: whether deliveries are signed (the secret itself is never shown)' }),
});

export const ExecutionJson = Type.Object({
  id: Type.Integer(),
  vendor_type: Type.String(),
  vendor_id: Type.Integer({ description: 'The policy id' }),
  status: Type.String({ description: 'Running, Success, Error or Stopped' }),
  status_message: Type.String(),
  metrics: Type.Object({
    task_count: Type.Integer(),
    success_task_count: Type.Integer(),
    error_task_count: Type.Integer(),
    pending_task_count: Type.Integer(),
    running_task_count: Type.Integer(),
    scheduled_task_count: Type.Integer(),
    stopped_task_count: Type.Integer(),
  }),
  trigger: Type.String(),
  extra_attrs: Type.Object({ event_type: Type.String(), operator: Type.String(), payload: Type.String({ description: 'The event as Harbor\u2019s Default payload (JSON text)' }) }),
  start_time: Type.String({ format: 'date-time' }),
  end_time: Type.Optional(Type.String({ format: 'date-time' })),
});

export const AttemptJson = Type.Object({
  attempt: Type.Integer(),
  start_time: Type.String({ format: 'date-time' }),
  latency_ms: Type.Integer(),
  status_code: Type.Optional(Type.Integer({ description: 'Absent when no answer came' })),
  error: Type.Optional(Type.String()),
});

export const TaskJson = Type.Object({
  id: Type.Integer(),
  execution_id: Type.Integer(),
  status: Type.String({ description: 'Pending (queued, or waiting for a retry), Running, Success, Error or Stopped' }),
  status_message: Type.String(),
  run_count: Type.Integer({ description: 'Attempts made' }),
  job_id: Type.String(),
  extra_attrs: Type.Object({
    type: Type.String(),
    address: Type.String(),
    payload_format: Type.String(),
    skip_cert_verify: Type.Boolean(),
    event_type: Type.String(),
    attempts: Type.Array(AttemptJson, { description: 'Berth: every attempt with its status code, latency and error' }),
  }),
  creation_time: Type.String({ format: 'date-time' }),
  update_time: Type.String({ format: 'date-time' }),
  start_time: Type.Optional(Type.String({ format: 'date-time' })),
  end_time: Type.Optional(Type.String({ format: 'date-time' })),
});

export const LastTriggerJson = Type.Object({
  policy_name: Type.String(),
  enabled: Type.Boolean(),
  event_type: Type.String(),
  creation_time: Type.String({ format: 'date-time' }),
  last_trigger_time: Type.Optional(Type.String({ format: 'date-time', description: 'Absent when the policy never fired for this event type' })),
});

export const EventsJson = Type.Object({
  event_type: Type.Array(Type.String()),
  notify_type: Type.Array(Type.String()),
  payload_formats: Type.Array(Type.Object({ notify_type: Type.String(), formats: Type.Array(Type.String()) })),
});

export const TestResultsJson = Type.Object({
  results: Type.Array(
    Type.Object({ address: Type.String(), ok: Type.Boolean(), status_code: Type.Optional(Type.Integer()), latency_ms: Type.Integer(), error: Type.Optional(Type.String()) }),
  ),
});

export const ErrorsJson = Type.Object({ errors: Type.Array(Type.Object({ code: Type.String(), message: Type.String() })) });
export const errorResponses = { 400: ErrorsJson, 401: ErrorsJson, 403: ErrorsJson, 404: ErrorsJson, 409: ErrorsJson, 412: ErrorsJson };

export const PolicyParams = Type.Object({ project_name_or_id: Type.String({ minLength: 1 }), webhook_policy_id: Type.String({ description: 'The webhook policy id' }) });
export const ExecutionParams = Type.Object({ project_name_or_id: Type.String({ minLength: 1 }), webhook_policy_id: Type.String(), execution_id: Type.String({ description: 'The execution id' }) });
export const TaskParams = Type.Object({
  project_name_or_id: Type.String({ minLength: 1 }),
  webhook_policy_id: Type.String(),
  execution_id: Type.String(),
  task_id: Type.String({ description: 'The task id' }),
});
export const ListQuery = Type.Object({
  page: Type.Optional(Type.String()),
  page_size: Type.Optional(Type.String()),
  q: Type.Optional(Type.String({ maxLength: 1024 })),
  sort: Type.Optional(Type.String({ maxLength: 64 })),
});

// ── mapping ───────────────────────────────────────────────────────────────

export const iso = (ms: number) => new Date(ms).toISOString();

export function policyJson(p: PolicyRecord): Static<typeof PolicyJson> {
  return {
    id: p.id,
    name: p.name,
    description: p.description,
    project_id: p.projectId,
    targets: p.targets.map((t) => ({ type: t.type, address: t.address, auth_header: t.authHeader, skip_cert_verify: t.skipCertVerify, payload_format: t.payloadFormat })),
    event_types: [...p.eventTypes],
    creator: p.creator,
    creation_time: iso(p.createdAt),
    update_time: iso(p.updatedAt),
    enabled: p.enabled,
    secret_set: p.sealedSecret !== null,
  };
}

export function executionJson(e: ExecutionView): Static<typeof ExecutionJson> {
  const c = e.counts.byStatus;
  return {
    id: e.id,
    vendor_type: 'WEBHOOK',
    vendor_id: e.policyId,
    status: e.status,
    status_message: '',
    metrics: {
      task_count: e.counts.total,
      success_task_count: c.Success,
      error_task_count: c.Error,
      pending_task_count: c.Pending,
      running_task_count: c.Running,
      scheduled_task_count: 0,
      stopped_task_count: c.Stopped,
    },
    trigger: 'EVENT',
    extra_attrs: { event_type: e.eventType, operator: e.operator, payload: e.payload },
    start_time: iso(e.createdAt),
    ...(e.endedAt !== null ? { end_time: iso(e.endedAt) } : {}),
  };
}

export function taskJson(t: TaskView): Static<typeof TaskJson> {
  return {
    id: t.id,
    execution_id: t.executionId,
    status: t.status,
    status_message: t.statusMessage,
    run_count: t.runCount,
    job_id: t.jobId === null ? '' : String(t.jobId),
    extra_attrs: {
      type: 'http',
      address: t.address,
      payload_format: t.payloadFormat,
      skip_cert_verify: t.skipCertVerify,
      event_type: t.eventType,
      attempts: t.attempts.map((a) => ({
        attempt: a.attempt,
        start_time: iso(a.startedAt),
        latency_ms: a.latencyMs,
        ...(a.statusCode !== null ? { status_code: a.statusCode } : {}),
        ...(a.error !== null ? { error: a.error } : {}),
      })),
    },
    creation_time: iso(t.createdAt),
    update_time: iso(t.updatedAt),
    ...(t.startedAt !== null ? { start_time: iso(t.startedAt) } : {}),
    ...(t.endedAt !== null ? { end_time: iso(t.endedAt) } : {}),
  };
}

export function testResultsJson(results: readonly TestResult[]): Static<typeof TestResultsJson> {
  return {
    results: results.map((r) => ({
      address: r.address,
      ok: r.ok,
      ...(r.statusCode !== undefined ? { status_code: r.statusCode } : {}),
      latency_ms: r.latencyMs,
      ...(r.error !== undefined ? { error: r.error } : {}),
    })),
  };
}
