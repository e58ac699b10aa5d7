/**
 * Harbor's webhook policy as data: the event types, notify types and payload formats it supports,
 * and the normalisation of a policy the API was given (every check that is not the JSON shape:
 * addresses, header values, event type names, the signing secret).
 */
import { checkTargetAddress, WebhookAddressError } from './address.ts';

export const EVENT_TYPES = [
  'PUSH_ARTIFACT',
  'PULL_ARTIFACT',
  'DELETE_ARTIFACT',
  'QUOTA_EXCEED',
  'QUOTA_WARNING',
  'SCANNING_COMPLETED',
  'SCANNING_FAILED',
  'SCANNING_STOPPED',
  'REPLICATION',
  'TAG_RETENTION',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The event type of the test endpoints' requests (never a policy's event type). */
export const TEST_EVENT_TYPE = 'TEST_ENDPOINT';

export const NOTIFY_TYPES = ['http'] as const;
export const PAYLOAD_FORMATS = ['Default', 'CloudEvents'] as const;
export type PayloadFormat = (typeof PAYLOAD_FORMATS)[number];

export const MAX_TARGETS = 10;
export const NAME_MAX = 256;
export const DESCRIPTION_MAX = 1024;
export const AUTH_HEADER_MAX = 4096;
export const SECRET_MIN = 8;
export const SECRET_MAX = 1024;

export interface WebhookTarget {
  readonly type: 'http';
  readonly address: string;
  /** Sent as the Authorization header when not empty. */
  readonly authHeader: string;
  readonly skipCertVerify: boolean;
  readonly payloadFormat: PayloadFormat;
}

/** A policy as the API sends it (Harbor's WebhookPolicy, plus Berth's write-only `secret`). */
export interface PolicyInput {
  readonly id?: number | undefined;
  readonly name: string;
  readonly description?: string | undefined;
  readonly project_id?: number | undefined;
  readonly targets: ReadonlyArray<{
    readonly type?: string | undefined;
    readonly address: string;
    readonly auth_header?: string | undefined;
    readonly skip_cert_verify?: boolean | undefined;
    readonly payload_format?: string | undefined;
  }>;
  readonly event_types: readonly string[];
  readonly enabled?: boolean | undefined;
  readonly secret?: string | undefined;
  readonly creator?: string | undefined;
  readonly creation_time?: string | undefined;
  readonly update_time?: string | undefined;
}

export interface NormalizedPolicy {
  readonly name: string;
  readonly description: string;
  readonly targets: readonly WebhookTarget[];
  readonly eventTypes: readonly EventType[];
  readonly enabled: boolean;
  /** A new secret; null removes it; undefined leaves it as it is (on update). */
  readonly secret: string | null | undefined;
}

export class WebhookPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookPolicyError';
  }
}

/** Whether the text holds a control character other than tab (line breaks included). */
function hasControlChars(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

function checkHeaderValue(value: string, what: string, max: number): void {
  if (value.length > max) throw new WebhookPolicyError(`${what} is longer than ${max} characters`);
  if (hasControlChars(value)) throw new WebhookPolicyError(`${what} must not contain line breaks or other control characters`);
  for (let i = 0; i < value.length; i++) {
    if (value.charCodeAt(i) > 0xff) throw new WebhookPolicyError(`${what} may only hold characters an HTTP header value can carry`);
  }
}

/** Checks and normalises a policy from the API. `creating`: an absent secret means none. */
export function normalizePolicy(input: PolicyInput, creating: boolean): NormalizedPolicy {
  const name = input.name.trim();
  if (name === '') throw new WebhookPolicyError('name must not be empty');
  if (name.length > NAME_MAX) throw new WebhookPolicyError(`name is longer than ${NAME_MAX} characters`);
  if (hasControlChars(name)) throw new WebhookPolicyError('name must not contain control characters');
  const description = input.description ?? '';
  if (description.length > DESCRIPTION_MAX) throw new WebhookPolicyError(`description is longer than ${DESCRIPTION_MAX} characters`);

  if (input.targets.length === 0) throw new WebhookPolicyError('targets must name at least one target');
  if (input.targets.length > MAX_TARGETS) throw new WebhookPolicyError(`a policy has at most ${MAX_TARGETS} targets`);
  const targets = input.targets.map((t, i): WebhookTarget => {
    const type = t.type ?? 'http';
    if (type !== 'http') throw new WebhookPolicyError(`targets[${i}].type "${type}" is not supported; the only notify type is http`);
    let address: string;
    try {
      address = checkTargetAddress(t.address);
    } catch (err) {
      if (err instanceof WebhookAddressError) throw new WebhookPolicyError(`targets[${i}].${err.message}`);
      throw err;
    }
    const authHeader = t.auth_header ?? '';
    checkHeaderValue(authHeader, `targets[${i}].auth_header`, AUTH_HEADER_MAX);
    const format = t.payload_format === undefined || t.payload_format === '' ? 'Default' : t.payload_format;
    if (!(PAYLOAD_FORMATS as readonly string[]).includes(format)) {
      throw new WebhookPolicyError(`targets[${i}].payload_format "${format}" is not one of ${PAYLOAD_FORMATS.join(', ')}`);
    }
    return { type: 'http', address, authHeader, skipCertVerify: t.skip_cert_verify ?? false, payloadFormat: format as PayloadFormat };
  });

  if (input.event_types.length === 0) throw new WebhookPolicyError('event_types must name at least one event type');
  const eventTypes: EventType[] = [];
  for (const type of input.event_types) {
    if (!(EVENT_TYPES as readonly string[]).includes(type)) throw new WebhookPolicyError(`unknown event type "${type}"; the event types are ${EVENT_TYPES.join(', ')}`);
    if (!eventTypes.includes(type as EventType)) eventTypes.push(type as EventType);
  }

  let secret: string | null | undefined;
  if (input.secret === undefined) secret = creating ? null : undefined;
  else if (input.secret === '') secret = null;
  else {
    if (input.secret.length < SECRET_MIN || input.secret.length > SECRET_MAX) throw new WebhookPolicyError(`secret must have ${SECRET_MIN} to ${SECRET_MAX} characters (an empty one removes it)`);
    if (hasControlChars(input.secret)) throw new WebhookPolicyError('secret must not contain control characters');
    secret = input.secret;
  }
  return { name, description, targets, eventTypes, enabled: input.enabled ?? true, secret };
}

/** The targets as stored (and shown): Harbor's field names. */
export function targetsJson(targets: readonly WebhookTarget[]): string {
  return JSON.stringify(targets.map((t) => ({ type: t.type, address: t.address, auth_header: t.authHeader, skip_cert_verify: t.skipCertVerify, payload_format: t.payloadFormat })));
}

export function parseTargets(text: string): WebhookTarget[] {
  const raw = JSON.parse(text) as Array<{ type: 'http'; address: string; auth_header: string; skip_cert_verify: boolean; payload_format: PayloadFormat }>;
  return raw.map((t) => ({ type: t.type, address: t.address, authHeader: t.auth_header, skipCertVerify: t.skip_cert_verify, payloadFormat: t.payload_format }));
}
