/**
 * What a webhook sends: Harbor's Default JSON payload or a CloudEvents 1.0 structured-mode event
 * (src/pkg/notifier/formats in Harbor), and Berth's optional HMAC-SHA256 signature of the body.
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { EventType, PayloadFormat } from './policy.ts';

/** A resource of the event: the artifact by digest and tag, and where to pull it. */
export interface EventResource {
  readonly digest?: string;
  readonly tag?: string;
  readonly resource_url?: string;
}

export interface EventRepository {
  /** Unix seconds; absent when the repository is gone. */
  readonly date_created?: number;
  /** The repository path without the project: "nginx", "team/app". */
  readonly name: string;
  /** The project. */
  readonly namespace: string;
  readonly repo_full_name: string;
  readonly repo_type: 'public' | 'private';
}

/** Harbor's event_data (the CloudEvents `data`). */
export interface EventData {
  readonly resources?: readonly EventResource[];
  readonly repository?: EventRepository;
  readonly custom_attributes?: Readonly<Record<string, string>>;
}

/** One event as a policy delivers it. */
export interface HookEvent {
  readonly type: EventType | 'TEST_ENDPOINT';
  /** Epoch milliseconds. */
  readonly occurAt: number;
  readonly operator: string;
  readonly requestId?: string | undefined;
  readonly data: EventData;
}

/** Harbor's Default payload. */
export interface DefaultPayload {
  readonly type: string;
  readonly occur_at: number;
  readonly operator: string;
  readonly event_data: EventData;
}

/** CloudEvents types of Harbor's event types. */
export const CLOUD_EVENT_TYPES: Record<HookEvent['type'], string> = {
  PUSH_ARTIFACT: 'harbor.artifact.pushed',
  PULL_ARTIFACT: 'harbor.artifact.pulled',
  DELETE_ARTIFACT: 'harbor.artifact.deleted',
  QUOTA_EXCEED: 'harbor.quota.exceeded',
  QUOTA_WARNING: 'harbor.quota.warned',
  SCANNING_COMPLETED: 'harbor.scan.completed',
  SCANNING_FAILED: 'harbor.scan.failed',
  SCANNING_STOPPED: 'harbor.scan.stopped',
  REPLICATION: 'harbor.replication.status.changed',
  TAG_RETENTION: 'harbor.tag_retention.finished',
  TEST_ENDPOINT: 'berth.webhook.test',
};

export const CLOUDEVENTS_CONTENT_TYPE = 'application/cloudevents+json';
export const DEFAULT_CONTENT_TYPE = 'application/json';
/** The header that carries `sha256=<hex>`, the HMAC-SHA256 of the body under the policy's secret. */
export const SIGNATURE_HEADER = 'x-berth-signature';

export function defaultPayload(event: HookEvent): DefaultPayload {
  return { type: event.type, occur_at: Math.floor(event.occurAt / 1000), operator: event.operator, event_data: event.data };
}

/** RFC 3339 time at second precision, as Harbor writes it. */
function rfc3339Seconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** The source of a policy's CloudEvents: /projects/{project id}/webhook/policies/{policy id}. */
export function cloudEventSource(projectId: number, policyId: number): string {
  return `/projects/${projectId}/webhook/policies/${policyId}`;
}

/** The body and content type to send for one event in one format. */
export function encodeEvent(format: PayloadFormat, event: HookEvent, source: { projectId: number; policyId: number }): { body: string; contentType: string } {
  if (format === 'Default') return { body: JSON.stringify(defaultPayload(event)), contentType: DEFAULT_CONTENT_TYPE };
  const cloudEvent = {
    specversion: '1.0',
    id: randomUUID(),
    requestid: event.requestId ?? '',
    source: cloudEventSource(source.projectId, source.policyId),
    type: CLOUD_EVENT_TYPES[event.type],
    datacontenttype: 'application/json',
    time: rfc3339Seconds(event.occurAt),
    data: event.data,
    operator: event.operator,
  };
  return { body: JSON.stringify(cloudEvent), contentType: CLOUDEVENTS_CONTENT_TYPE };
}

export function contentTypeOf(format: PayloadFormat): string {
  return format === 'CloudEvents' ? CLOUDEVENTS_CONTENT_TYPE : DEFAULT_CONTENT_TYPE;
}

/** `sha256=<hex>`: the HMAC-SHA256 of the exact body bytes under `secret` (GitHub's scheme). */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

/** The headers of a webhook request: content type, Berth's event/delivery/attempt, the auth header, the signature. */
export function deliveryHeaders(
  request: { contentType: string; authHeader: string; eventType: string; delivery: string; attempt: number },
  secret: string | null,
  body: string,
): Record<string, string> {
  return {
    'content-type': request.contentType,
    'x-berth-event': request.eventType,
    'x-berth-delivery': request.delivery,
    'x-berth-attempt': String(request.attempt),
    ...(request.authHeader !== '' ? { authorization: request.authHeader } : {}),
    ...(secret !== null ? { [SIGNATURE_HEADER]: signBody(secret, body) } : {}),
  };
}
