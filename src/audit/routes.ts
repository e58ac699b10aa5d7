/**
 * Harbor's audit-log API: GET /audit-logs (system: audit-log list, system admins) and
 * GET /projects/{project_name_or_id}/logs (project resource log, list: project admins), in the
 * legacy AuditLog shape; the same in the AuditLogExt shape under /auditlog-exts and
 * /projects/{…}/auditlog-exts, with /auditlog-exts/events; ours: exports of a search as CSV or
 * JSON lines (…/export?format=csv|jsonl, streamed) and GET /system/audit/verify (the chain check).
 * Every entry carries our extra fields besides Harbor's.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl, ProjectRef } from '../iam/access.ts';
import { pageParams, setPageHeaders } from '../platform/http/api.ts';
import { requireProjectParam } from '../projects/params.ts';
import type { ProjectService } from '../projects/service.ts';
import { type AuditEntry, EVENT_TYPES } from './entry.ts';
import { entryJson } from './forward.ts';
import { conditionsOf, exportOrderOf, QUERY_KEYS, SORT_FIELDS, sortOf } from './query.ts';
import type { AuditStore, Condition } from './store.ts';

export interface AuditRoutesDeps {
  readonly store: AuditStore;
  readonly access: AccessControl;
  readonly projects: ProjectService;
}

// ── schemas ───────────────────────────────────────────────────────────────

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

/** Our fields, besides Harbor's. */
const ExtraFields = {
  principal_kind: Type.String({ description: 'user, robot, anonymous or system' }),
  project: Nullable(Type.String({ description: 'The project the resource belongs to' })),
  result: Type.String({ description: 'success or failure' }),
  reason: Nullable(Type.String({ description: 'Why it failed: the error code and message' })),
  status: Nullable(Type.Integer({ description: 'The HTTP status the client got' })),
  client_address: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  request_id: Nullable(Type.String()),
  hash: Type.String({ description: 'SHA-256 (hex) of the previous entry’s hash and this entry: the chain that GET /system/audit/verify checks' }),
};

const AuditLogJson = Type.Object({
  id: Type.Integer(),
  username: Type.String({ description: 'Who: a user or robot name, anonymous, or system' }),
  resource: Type.String({ description: 'project/repo:tag or project/repo@digest for artifacts and tags; the name or API path otherwise' }),
  resource_type: Type.String(),
  operation: Type.String({ description: 'create (a push), pull, update, delete, login …' }),
  op_time: Type.String({ format: 'date-time' }),
  description: Nullable(Type.String()),
  ...ExtraFields,
});

const AuditLogExtJson = Type.Object({
  id: Type.Integer(),
  username: Type.String(),
  resource: Type.String(),
  resource_type: Type.String(),
  operation: Type.String(),
  operation_description: Type.String(),
  operation_result: Type.Boolean(),
  op_time: Type.String({ format: 'date-time' }),
  ...ExtraFields,
});

const ErrorsJson = Type.Object({ errors: Type.Array(Type.Object({ code: Type.String(), message: Type.String() })) });
const errorResponses = { 400: ErrorsJson, 401: ErrorsJson, 403: ErrorsJson, 404: ErrorsJson };

const Q_DOC = `Filters, comma-separated: key=value (exact), key=~value (contains, ignoring case), op_time=[min~max] (a range; times as "2020-04-09 02:36:00" in UTC or RFC 3339; either end may be left out), key={a b} (any of). Keys: ${QUERY_KEYS.join(', ')}.`;
const SORT_DOC = `Comma-separated fields, - for descending: ${SORT_FIELDS.join(', ')}. Newest first by default.`;

const ListQuery = Type.Object({
  q: Type.Optional(Type.String({ description: Q_DOC })),
  sort: Type.Optional(Type.String({ description: SORT_DOC })),
  page: Type.Optional(Type.String()),
  page_size: Type.Optional(Type.String({ description: '1 to 100; 10 by default' })),
});
type ListQuery = Static<typeof ListQuery>;

const ExportQuery = Type.Object({
  format: Type.Enum(['csv', 'jsonl'], { description: 'csv (a header line, then RFC 4180 rows) or jsonl (one JSON object per line)' }),
  q: Type.Optional(Type.String({ description: Q_DOC })),
  sort: Type.Optional(Type.String({ description: 'op_time or id, - for descending; chain order (id ascending) by default' })),
});
type ExportQuery = Static<typeof ExportQuery>;

const ProjectParams = Type.Object({ project_name_or_id: Type.String({ minLength: 1, description: 'The project name, or its id when all digits (unless X-Is-Resource-Name: true)' }) });
type ProjectParams = Static<typeof ProjectParams>;

const VerifyJson = Type.Object({
  valid: Type.Boolean({ description: 'Whether every entry from the checkpoint to the head verifies' }),
  checked: Type.Integer({ description: 'Entries whose hash was recomputed' }),
  checkpoint: Type.Object({ id: Type.Integer({ description: 'The last purged entry (0: none purged)' }), hash: Type.String() }),
  head: Type.Object({ id: Type.Integer({ description: 'The newest entry' }), hash: Type.String() }),
  first_break: Nullable(
    Type.Object({
      id: Type.Integer({ description: 'The first entry that does not verify, or the first one missing' }),
      kind: Type.String({ description: 'missing (deleted), altered (edited), extra (added outside the log) or head (the head does not match)' }),
      message: Type.String(),
    }),
  ),
});

// ── JSON ──────────────────────────────────────────────────────────────────

function extra(entry: AuditEntry) {
  return {
    principal_kind: entry.principalKind,
    project: entry.project,
    result: entry.result,
    reason: entry.reason,
    status: entry.status,
    client_address: entry.clientAddress,
    user_agent: entry.userAgent,
    request_id: entry.requestId,
    hash: entry.hash,
  };
}

export function auditLogJson(entry: AuditEntry): Static<typeof AuditLogJson> {
  return {
    id: entry.id,
    username: entry.principal,
    resource: entry.resource,
    resource_type: entry.resourceType,
    operation: entry.operation,
    op_time: new Date(entry.at).toISOString(),
    description: entry.description,
    ...extra(entry),
  };
}

export function auditLogExtJson(entry: AuditEntry): Static<typeof AuditLogExtJson> {
  return {
    id: entry.id,
    username: entry.principal,
    resource: entry.resource,
    resource_type: entry.resourceType,
    operation: entry.operation,
    operation_description: entry.description ?? `${entry.operation} ${entry.resourceType}`,
    operation_result: entry.result === 'success',
    op_time: new Date(entry.at).toISOString(),
    ...extra(entry),
  };
}

// ── export ────────────────────────────────────────────────────────────────

const CSV_COLUMNS = ['id', 'op_time', 'username', 'principal_kind', 'operation', 'resource_type', 'resource', 'project', 'result', 'reason', 'status', 'client_address', 'user_agent', 'request_id', 'description', 'hash'] as const;

/** An RFC 4180 field; text a spreadsheet would run as a formula (= + - @ first) gets a leading apostrophe. */
function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

async function* exportLines(entries: AsyncIterable<AuditEntry>, format: 'csv' | 'jsonl'): AsyncGenerator<string> {
  let chunk = format === 'csv' ? `${CSV_COLUMNS.join(',')}\r\n` : '';
  for await (const entry of entries) {
    const json = entryJson(entry);
    chunk += format === 'csv' ? `${CSV_COLUMNS.map((c) => csvField(json[c])).join(',')}\r\n` : `${JSON.stringify(json)}\n`;
    if (chunk.length >= 64 * 1024) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk !== '') yield chunk;
}

function sendExport(reply: FastifyReply, store: AuditStore, conditions: readonly Condition[], query: ExportQuery, name: string): FastifyReply {
  const order = exportOrderOf(query.sort);
  const stream = Readable.from(exportLines(store.iterate(conditions, order), query.format));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return reply
    .header('content-type', query.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8')
    .header('content-disposition', `attachment; filename="${name}-${stamp}.${query.format}"`)
    .send(stream);
}

// ── routes ────────────────────────────────────────────────────────────────

export async function auditRoutes(api: FastifyInstance, deps: AuditRoutesDeps): Promise<void> {
  const { store, access } = deps;
  const systemAllowed = async (request: FastifyRequest) => {
    access.requireSystem(request, 'audit-log', 'list');
  };
  const projectOf = (request: FastifyRequest<{ Params: ProjectParams }>): Promise<ProjectRef> =>
    requireProjectParam(request, { projects: deps.projects, access }, request.params.project_name_or_id, 'log', 'list');

  const search = async (request: FastifyRequest<{ Querystring: ListQuery }>, reply: FastifyReply, scope: readonly Condition[]) => {
    const page = pageParams(request.query);
    const conditions = [...scope, ...conditionsOf(request.query.q)];
    const sort = sortOf(request.query.sort);
    const { total, entries } = await store.search(conditions, sort, page.offset, page.pageSize);
    setPageHeaders(request, reply, page, total);
    return entries;
  };
  const projectScope = (project: ProjectRef): Condition[] => [{ column: 'project', kind: 'eq', value: project.name }];

  api.get<{ Querystring: ListQuery }>(
    '/audit-logs',
    {
      onRequest: systemAllowed,
      schema: { tags: ['auditlog'], operationId: 'listAuditLogs', summary: 'Search the audit log (system admins)', querystring: ListQuery, response: { 200: Type.Array(AuditLogJson), ...errorResponses } },
    },
    async (request, reply) => (await search(request, reply, [])).map(auditLogJson),
  );

  api.get<{ Querystring: ListQuery }>(
    '/auditlog-exts',
    {
      onRequest: systemAllowed,
      schema: {
        tags: ['auditlog'],
        operationId: 'listAuditLogExts',
        summary: 'Search the audit log, in the AuditLogExt shape (system admins)',
        querystring: ListQuery,
        response: { 200: Type.Array(AuditLogExtJson), ...errorResponses },
      },
    },
    async (request, reply) => (await search(request, reply, [])).map(auditLogExtJson),
  );

  api.get(
    '/auditlog-exts/events',
    {
      onRequest: systemAllowed,
      schema: {
        tags: ['auditlog'],
        operationId: 'listAuditLogEventTypes',
        summary: 'The event types the audit log records (operation_resource-type)',
        response: { 200: Type.Array(Type.Object({ event_type: Type.String() })), ...errorResponses },
      },
    },
    async () => EVENT_TYPES.map((event_type) => ({ event_type })),
  );

  api.get<{ Querystring: ExportQuery }>(
    '/audit-logs/export',
    {
      onRequest: systemAllowed,
      schema: {
        tags: ['auditlog'],
        operationId: 'exportAuditLogs',
        summary: 'Export a search of the audit log as CSV or JSON lines, streamed (system admins)',
        querystring: ExportQuery,
        response: { 200: Type.String(), ...errorResponses },
      },
    },
    async (request, reply) => sendExport(reply, store, conditionsOf(request.query.q), request.query, 'audit-log'),
  );

  api.get<{ Params: ProjectParams; Querystring: ListQuery }>(
    '/projects/:project_name_or_id/logs',
    {
      schema: {
        tags: ['project'],
        operationId: 'getLogs',
        summary: "Search a project's audit log (project admins)",
        params: ProjectParams,
        querystring: ListQuery,
        response: { 200: Type.Array(AuditLogJson), ...errorResponses },
      },
    },
    async (request, reply) => (await search(request, reply, projectScope(await projectOf(request)))).map(auditLogJson),
  );

  api.get<{ Params: ProjectParams; Querystring: ListQuery }>(
    '/projects/:project_name_or_id/auditlog-exts',
    {
      schema: {
        tags: ['project'],
        operationId: 'getLogExts',
        summary: "Search a project's audit log in the AuditLogExt shape (project admins)",
        params: ProjectParams,
        querystring: ListQuery,
        response: { 200: Type.Array(AuditLogExtJson), ...errorResponses },
      },
    },
    async (request, reply) => (await search(request, reply, projectScope(await projectOf(request)))).map(auditLogExtJson),
  );

  api.get<{ Params: ProjectParams; Querystring: ExportQuery }>(
    '/projects/:project_name_or_id/logs/export',
    {
      schema: {
        tags: ['project'],
        operationId: 'exportProjectLogs',
        summary: "Export a search of a project's audit log as CSV or JSON lines, streamed (project admins)",
        params: ProjectParams,
        querystring: ExportQuery,
        response: { 200: Type.String(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const project = await projectOf(request);
      return sendExport(reply, store, [...projectScope(project), ...conditionsOf(request.query.q)], request.query, `audit-log-${project.name}`);
    },
  );

  api.get(
    '/system/audit/verify',
    {
      onRequest: async (request) => access.requireSystem(request, 'audit-log', 'list'),
      schema: {
        tags: ['auditlog'],
        operationId: 'verifyAuditLog',
        summary: 'Recompute the audit log’s hash chain and report the first entry where it breaks (system admins)',
        response: { 200: VerifyJson, ...errorResponses },
      },
    },
    async () => {
      const result = await store.verify();
      return { valid: result.valid, checked: result.checked, checkpoint: result.checkpoint, head: result.head, first_break: result.firstBreak ?? null };
    },
  );
}
