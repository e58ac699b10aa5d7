/**
 * Harbor's audit log purge API under /api/v2.0/system/purgeaudit: the schedule (GET/POST/PUT
 * /system/purgeaudit/schedule; type Manual purges now), the history (GET /system/purgeaudit,
 * /system/purgeaudit/{purge_id}), stop (PUT /system/purgeaudit/{purge_id}) and the log
 * (GET /system/purgeaudit/{purge_id}/log). System resource purge-audit: system admins.
 */
import { harborScheduleJson, numericPathId } from '../platform/http/harbor-schedule.ts';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl } from '../iam/access.ts';
import type { Action } from '../iam/rbac.ts';
import { pageParams, setPageHeaders } from '../platform/http/api.ts';
import { type AuditPurges, MAX_RETENTION_HOURS, type PurgeScheduleView, type PurgeView, SCHEDULE_TYPES } from './purge.ts';

export interface PurgeRoutesDeps {
  readonly purges: AuditPurges;
  readonly access: AccessControl;
}

const Parameters = Type.Object(
  {
    audit_retention_hour: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_RETENTION_HOURS, description: 'Entries older than this many hours are purged' })),
    include_event_types: Type.Optional(
      Type.String({ maxLength: 4096, description: 'Accepted for Harbor clients; a purge removes the oldest entries of every type, so that the entries kept still verify as one chain' }),
    ),
    dry_run: Type.Optional(Type.Boolean({ description: 'Count what would be purged; change nothing' })),
    max_entries: Type.Optional(Type.Integer({ minimum: 1, description: 'Berth: also purge all but the newest this many entries' })),
  },
  { additionalProperties: false },
);

const ScheduleBody = Type.Object(
  {
    schedule: Type.Object(
      {
        type: Type.Enum([...SCHEDULE_TYPES], { description: 'Manual purges now; None removes the schedule; Hourly, Daily, Weekly use Harbor’s crons unless cron is given; Custom needs cron' }),
        cron: Type.Optional(Type.String({ maxLength: 256, description: 'Cron in UTC: six fields (seconds first) or five' })),
        next_scheduled_time: Type.Optional(Type.String({ description: 'Read-only; ignored' })),
      },
      { additionalProperties: false },
    ),
    parameters: Type.Optional(Parameters),
    id: Type.Optional(Type.Integer()),
    status: Type.Optional(Type.String()),
    creation_time: Type.Optional(Type.String()),
    update_time: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
type ScheduleBody = Static<typeof ScheduleBody>;

const ScheduleObj = Type.Object({ type: Type.String(), cron: Type.String(), next_scheduled_time: Type.Optional(Type.String()) });

const ExecHistoryJson = Type.Object({
  id: Type.Integer(),
  job_name: Type.String(),
  job_kind: Type.String({ description: 'MANUAL or SCHEDULE' }),
  job_parameters: Type.String({ description: 'The parameters as JSON text' }),
  schedule: ScheduleObj,
  job_status: Type.String({ description: 'Pending, Running, Success, Error or Stopped' }),
  deleted: Type.Boolean(),
  creation_time: Type.String({ format: 'date-time' }),
  update_time: Type.String({ format: 'date-time' }),
  error: Type.Union([Type.String(), Type.Null()]),
});

const ScheduleJson = Type.Object({
  id: Type.Integer(),
  job_name: Type.String(),
  job_kind: Type.String(),
  job_parameters: Type.String(),
  schedule: ScheduleObj,
  parameters: Type.Object({}, { additionalProperties: true }),
  job_status: Type.String(),
  deleted: Type.Boolean(),
  creation_time: Type.Optional(Type.String({ format: 'date-time' })),
  update_time: Type.Optional(Type.String({ format: 'date-time' })),
});

const ErrorsJson = Type.Object({ errors: Type.Array(Type.Object({ code: Type.String(), message: Type.String() })) });
const errorResponses = { 400: ErrorsJson, 401: ErrorsJson, 403: ErrorsJson, 404: ErrorsJson, 409: ErrorsJson };

const IdParams = Type.Object({ purge_id: Type.String({ description: 'The purge id' }) });
type IdParams = Static<typeof IdParams>;
const PageQuery = Type.Object({
  page: Type.Optional(Type.String()),
  page_size: Type.Optional(Type.String()),
  q: Type.Optional(Type.String({ description: 'Accepted for compatibility; not used' })),
  sort: Type.Optional(Type.String({ description: 'Accepted for compatibility; newest first' })),
});
type PageQuery = Static<typeof PageQuery>;

const JOB_NAME = 'PURGE_AUDIT_LOG';

function historyJson(view: PurgeView): Static<typeof ExecHistoryJson> {
  const scheduled = view.trigger === 'SCHEDULE';
  return {
    id: view.id,
    job_name: JOB_NAME,
    job_kind: view.trigger,
    job_parameters: JSON.stringify(view.parameters),
    schedule: { type: scheduled ? 'Schedule' : 'Manual', cron: '' },
    job_status: view.status,
    deleted: false,
    creation_time: new Date(view.createdAt).toISOString(),
    update_time: new Date(view.updatedAt).toISOString(),
    error: view.error,
  };
}

function scheduleJson(schedule: PurgeScheduleView): Static<typeof ScheduleJson> {
  return harborScheduleJson(JOB_NAME, schedule) as Static<typeof ScheduleJson>;
}

function purgeId(raw: string): number {
  return numericPathId(raw, 'purge_id');
}

export async function purgeRoutes(api: FastifyInstance, deps: PurgeRoutesDeps): Promise<void> {
  const { purges, access } = deps;
  const tags = ['purge'];
  const allowed = (action: Action) => async (request: FastifyRequest) => {
    access.requireSystem(request, 'purge-audit', action);
  };
  const apply = (body: ScheduleBody) => purges.applySchedule(body.schedule.type, body.schedule.cron, body.parameters);

  api.get(
    '/system/purgeaudit/schedule',
    {
      onRequest: allowed('read'),
      schema: { tags, operationId: 'getPurgeSchedule', summary: 'The audit log purge schedule (type None when there is none)', response: { 200: ScheduleJson, ...errorResponses } },
    },
    async () => scheduleJson(await purges.getSchedule()),
  );

  api.post<{ Body: ScheduleBody }>(
    '/system/purgeaudit/schedule',
    {
      onRequest: allowed('create'),
      schema: {
        tags,
        operationId: 'createPurgeSchedule',
        summary: 'Purge the audit log now (type Manual; Location names the purge) or set the purge schedule',
        body: ScheduleBody,
        response: { 201: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const id = await apply(request.body);
      if (id !== undefined) reply.header('location', `/api/v2.0/system/purgeaudit/${id}`);
      return reply.code(201).send();
    },
  );

  api.put<{ Body: ScheduleBody }>(
    '/system/purgeaudit/schedule',
    {
      onRequest: allowed('update'),
      schema: { tags, operationId: 'updatePurgeSchedule', summary: 'Set or remove the audit log purge schedule (type Manual purges now)', body: ScheduleBody, response: { 200: Type.Null(), ...errorResponses } },
    },
    async (request, reply) => {
      const id = await apply(request.body);
      if (id !== undefined) reply.header('location', `/api/v2.0/system/purgeaudit/${id}`);
      return reply.code(200).send();
    },
  );

  api.get<{ Querystring: PageQuery }>(
    '/system/purgeaudit',
    {
      onRequest: allowed('list'),
      schema: { tags, operationId: 'getPurgeHistory', summary: 'Audit log purges, newest first', querystring: PageQuery, response: { 200: Type.Array(ExecHistoryJson), ...errorResponses } },
    },
    async (request, reply) => {
      const page = pageParams(request.query);
      const { total, items } = await purges.list(page.offset, page.pageSize);
      setPageHeaders(request, reply, page, total);
      return items.map(historyJson);
    },
  );

  api.get<{ Params: IdParams }>(
    '/system/purgeaudit/:purge_id',
    {
      onRequest: allowed('read'),
      schema: { tags, operationId: 'getPurgeJob', summary: 'One audit log purge', params: IdParams, response: { 200: ExecHistoryJson, ...errorResponses } },
    },
    async (request) => historyJson(await purges.get(purgeId(request.params.purge_id))),
  );

  api.put<{ Params: IdParams }>(
    '/system/purgeaudit/:purge_id',
    {
      onRequest: allowed('stop'),
      schema: { tags, operationId: 'stopPurgeAudit', summary: 'Stop a pending or running audit log purge (between two batches)', params: IdParams, response: { 200: Type.Null(), ...errorResponses } },
    },
    async (request, reply) => {
      await purges.stop(purgeId(request.params.purge_id));
      return reply.code(200).send();
    },
  );

  api.get<{ Params: IdParams }>(
    '/system/purgeaudit/:purge_id/log',
    {
      onRequest: allowed('read'),
      schema: { tags, operationId: 'getPurgeJobLog', summary: 'The log of an audit log purge (text)', params: IdParams, response: { 200: Type.String(), ...errorResponses } },
    },
    async (request, reply) => reply.header('content-type', 'text/plain; charset=utf-8').send(await purges.log(purgeId(request.params.purge_id))),
  );
}
