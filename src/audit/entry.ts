/**
 * What an audit entry holds, how a domain event becomes one, and its place in the hash chain:
 * hash = SHA-256(previous hash ‖ "\n" ‖ canonical entry), where the canonical entry is a JSON
 * array of every field in a fixed order (the id included, so entries cannot be renumbered or
 * swapped). Pure functions: no SQL, no I/O.
 */
import { hash } from 'node:crypto';
import type { ApiOperationEvent, DomainEvent, JobFinishedEvent, LoginEvent, QuotaEvent, RegistryOperationEvent } from '../platform/events/bus.ts';

/** The hash before the first entry ever written. */
export const GENESIS_HASH = '0'.repeat(64);

/** An entry before it is written (no id, no hash yet). */
export interface AuditRecord {
  readonly at: number;
  readonly principal: string;
  readonly principalKind: string;
  readonly operation: string;
  readonly resourceType: string;
  readonly resource: string;
  readonly project: string | null;
  readonly result: 'success' | 'failure';
  readonly reason: string | null;
  readonly status: number | null;
  readonly clientAddress: string | null;
  readonly userAgent: string | null;
  readonly requestId: string | null;
  readonly description: string | null;
}

/** A written entry: its place in the chain and its hash. */
export interface AuditEntry extends AuditRecord {
  readonly id: number;
  readonly hash: string;
}

/** Longest text kept per field: an entry stays small whatever a client sends. */
const MAX_CHARS = { principal: 256, resource: 1024, project: 256, reason: 1024, address: 64, userAgent: 512, requestId: 128, description: 1024 } as const;

/**
 * Text as the database stores it and gives it back, so that the hash of what is read equals the
 * hash of what was written: well-formed UTF-16 (a lone surrogate would come back as U+FFFD), no
 * NUL (PostgreSQL text refuses it), bounded length.
 */
export function cleanText(value: string, max: number): string {
  if (value.length <= max && value.isWellFormed() && !value.includes('\u0000')) return value;
  let text = value.toWellFormed();
  if (text.includes('\u0000')) text = text.replaceAll('\u0000', '\uFFFD');
  if (text.length > max) text = `${text.slice(0, max - 1).toWellFormed()}…`;
  return text;
}

function optional(value: string | undefined | null, max: number): string | null {
  return value === undefined || value === null || value === '' ? null : cleanText(value, max);
}

/** A record with every text as the database keeps it (see cleanText); the store applies it to whatever it is given. */
export function cleanRecord(record: AuditRecord): AuditRecord {
  return {
    at: record.at,
    principal: cleanText(record.principal || 'anonymous', MAX_CHARS.principal),
    principalKind: cleanText(record.principalKind, 32),
    operation: cleanText(record.operation, 64),
    resourceType: cleanText(record.resourceType, 64),
    resource: cleanText(record.resource, MAX_CHARS.resource),
    project: optional(record.project, MAX_CHARS.project),
    result: record.result,
    reason: optional(record.reason, MAX_CHARS.reason),
    status: record.status,
    clientAddress: optional(record.clientAddress, MAX_CHARS.address),
    userAgent: optional(record.userAgent, MAX_CHARS.userAgent),
    requestId: optional(record.requestId, MAX_CHARS.requestId),
    description: optional(record.description, MAX_CHARS.description),
  };
}

/** The canonical form an entry's hash covers. */
export function canonical(entry: AuditRecord & { readonly id: number }): string {
  return JSON.stringify([
    entry.id,
    entry.at,
    entry.principal,
    entry.principalKind,
    entry.operation,
    entry.resourceType,
    entry.resource,
    entry.project,
    entry.result,
    entry.reason,
    entry.status,
    entry.clientAddress,
    entry.userAgent,
    entry.requestId,
    entry.description,
  ]);
}

export function chainHash(previousHash: string, entry: AuditRecord & { readonly id: number }): string {
  return hash('sha256', `${previousHash}\n${canonical(entry)}`, 'hex');
}

/** The project of a repository name: its first path component (none for a name without one). */
export function projectOfRepository(repository: string): string | null {
  const slash = repository.indexOf('/');
  return slash > 0 ? repository.slice(0, slash) : null;
}

/** project/repo:tag for a tag, project/repo@digest for a digest. */
export function artifactResource(repository: string, reference: string): string {
  return reference.includes(':') ? `${repository}@${reference}` : `${repository}:${reference}`;
}

interface Base {
  readonly principal: string;
  readonly principalKind: string;
  readonly clientAddress: string | null;
  readonly userAgent: string | null;
  readonly requestId: string | null;
}

// Built on the request path: plain field copies only. The store cleans and bounds the text when it writes (cleanRecord).
function actorFields(event: DomainEvent): Base {
  const actor = event.actor;
  return {
    principal: actor.name || 'anonymous',
    principalKind: actor.kind,
    clientAddress: actor.address ?? null,
    userAgent: actor.userAgent ?? null,
    requestId: actor.requestId ?? null,
  };
}

function record(event: DomainEvent, fields: Omit<AuditRecord, keyof Base | 'at'>): AuditRecord {
  return { at: event.at, ...actorFields(event), ...fields };
}

/** Harbor's operation names: a push creates an artifact. */
const REGISTRY_OPERATIONS = { push: 'create', pull: 'pull', delete: 'delete' } as const;

function fromRegistry(event: RegistryOperationEvent): AuditRecord {
  const reference = event.reference;
  const otherDigest = event.digest && event.digest !== reference ? event.digest : undefined;
  let description: string;
  if (event.operation === 'pull') {
    // Pulls are the bulk of the log, built on the request path: their description names only the digest a tag resolved to.
    description = otherDigest === undefined ? `pull ${event.resourceType}` : `pull ${event.resourceType} (${otherDigest})`;
  } else {
    const details = [otherDigest, event.mediaType, event.size !== undefined ? `${event.size} bytes` : undefined].filter((d) => d !== undefined);
    description = `${event.operation} ${event.resourceType}${details.length > 0 ? ` (${details.join(', ')})` : ''}`;
  }
  const actor = event.actor;
  // One object literal (not record()'s spreads): this runs once per pull.
  return {
    at: event.at,
    principal: actor.name || 'anonymous',
    principalKind: actor.kind,
    clientAddress: actor.address ?? null,
    userAgent: actor.userAgent ?? null,
    requestId: actor.requestId ?? null,
    operation: REGISTRY_OPERATIONS[event.operation],
    resourceType: event.resourceType,
    resource: artifactResource(event.repository, reference),
    project: projectOfRepository(event.repository),
    result: event.result,
    reason: event.reason ?? null,
    status: event.status,
    description,
  };
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * The resource of a management-API change. Artifacts, tags and repositories are named as on the
 * registry (project/repo:tag, project/repo@digest, project/repo); other resources by their path
 * (projects/team/members/3, users/7 …), or by the created resource's path when the API said where
 * it is (a 201 with Location).
 */
export function apiResource(event: ApiOperationEvent): { resource: string; project: string | null } {
  const location = (event as { readonly location?: unknown }).location;
  const path = typeof location === 'string' && location !== '' ? location.replace(/^\/api\/v2\.0\//, '').replace(/^\/+/, '') : event.resource;
  const segments = path.split('/');
  if (segments[0] === 'projects' && segments[2] === 'repositories' && segments[3] !== undefined) {
    // Repository names with slashes arrive double-encoded (a%252Fb, decoded once on the way).
    const repository = `${decodeSegment(segments[1] as string)}/${decodeSegment(segments[3])}`;
    const project = decodeSegment(segments[1] as string);
    if (segments[4] === 'artifacts' && segments[5] !== undefined) {
      const reference = decodeSegment(segments[5]);
      if (segments[6] === 'tags' && segments[7] !== undefined) return { resource: `${repository}:${decodeSegment(segments[7])}`, project };
      return { resource: artifactResource(repository, reference), project };
    }
    return { resource: repository, project };
  }
  if (segments[0] === 'projects' && segments.length === 2 && segments[1]) return { resource: decodeSegment(segments[1]), project: decodeSegment(segments[1]) };
  return { resource: path, project: event.project ?? null };
}

function fromApi(event: ApiOperationEvent): AuditRecord {
  const { resource, project } = apiResource(event);
  return record(event, {
    operation: event.operation,
    resourceType: event.resourceType,
    resource,
    project: project ?? event.project ?? null,
    result: event.result,
    reason: event.reason ?? null,
    status: event.status,
    description: `${event.method} /api/v2.0/${event.resource}`,
  });
}

function fromLogin(event: LoginEvent): AuditRecord {
  return record(event, {
    operation: 'login',
    resourceType: 'user',
    resource: event.actor.name || 'anonymous',
    project: null,
    result: event.result,
    reason: event.reason ?? null,
    status: null,
    description: event.result === 'success' ? 'login' : 'failed login',
  });
}

function fromQuota(event: QuotaEvent): AuditRecord {
  const exceeded = event.type === 'quota.exceeded';
  return record(event, {
    operation: exceeded ? 'exceed' : 'warning',
    resourceType: 'quota',
    resource: event.repository ?? event.project,
    project: event.project,
    result: exceeded ? 'failure' : 'success',
    reason: event.message,
    status: null,
    description: `${event.used} of ${event.hard} bytes used`,
  });
}

/**
 * The background runs the log keeps (a user started them or a schedule did) and Harbor's resource
 * type for each; housekeeping jobs (upload and session purges, webhook deliveries …) are left out.
 */
const AUDITED_JOBS: Record<string, string> = { 'gc.run': 'garbage_collection', 'retention.run': 'retention', 'audit.purge': 'purge_audit' };

function fromJob(event: JobFinishedEvent): AuditRecord | undefined {
  const resourceType = AUDITED_JOBS[event.kind];
  if (resourceType === undefined) return undefined;
  const ok = event.status === 'succeeded';
  return record(event, {
    operation: 'run',
    resourceType,
    resource: `jobs/${event.jobId}`,
    project: null,
    result: ok ? 'success' : 'failure',
    reason: ok ? null : (event.error ?? event.status),
    status: null,
    description: `${event.kind} job ${event.jobId} ${event.status}`,
  });
}

/** The entry for a domain event, or undefined for events the audit log does not keep. */
export function recordOf(event: DomainEvent): AuditRecord | undefined {
  switch (event.type) {
    case 'registry.operation':
      return fromRegistry(event);
    case 'api.operation':
      return fromApi(event);
    case 'login':
      return fromLogin(event);
    case 'quota.warning':
    case 'quota.exceeded':
      return fromQuota(event);
    case 'job.finished':
      return fromJob(event);
    default:
      return undefined;
  }
}

/** The operation/resource-type pairs the log records, as Harbor's event types (create_artifact …). */
export const EVENT_TYPES = [
  'create_artifact',
  'pull_artifact',
  'delete_artifact',
  'delete_tag',
  'create_tag',
  'delete_repository',
  'update_repository',
  'create_project',
  'update_project',
  'delete_project',
  'create_member',
  'update_member',
  'delete_member',
  'create_robot',
  'update_robot',
  'delete_robot',
  'create_user',
  'update_user',
  'delete_user',
  'login_user',
  'create_project_metadata',
  'update_project_metadata',
  'delete_project_metadata',
  'update_quota',
  'create_retention',
  'update_retention',
  'delete_retention',
  'create_immutable_rule',
  'update_immutable_rule',
  'delete_immutable_rule',
  'exceed_quota',
  'warning_quota',
  'run_garbage_collection',
  'run_retention',
  'run_purge_audit',
] as const;
