/**
 * Harbor's garbage collection API under /api/v2.0/system/gc: the schedule (GET/POST/PUT
 * /system/gc/schedule; type Manual runs now), the history (GET /system/gc, /system/gc/{gc_id}),
 * stop (PUT /system/gc/{gc_id}) and the log (GET /system/gc/{gc_id}/log). System admins only.
 */
import { harborScheduleJson, numericPathId } from '../platform/http/harbor-schedule.ts';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl } from '../iam/access.ts';
import type { Action } from '../iam/rbac.ts';
import { pageParams, setPageHeaders } from '../platform/http/api.ts';
import { type GcRuns, type GcRunView, type GcScheduleView, MAX_WORKERS, SCHEDULE_TYPES } from './runs.ts';

export interface GcRoutesDeps {
  readonly runs: GcRuns;
  readonly access: AccessControl;
}

const Parameters = Type.Object(
  {
    delete_untagged: Type.Optional(Type.Boolean({ description: 'Also delete untagged artifacts (their signatures and SBOMs go with them; those of kept artifacts stay)' })),
    dry_run: Type.Optional(Type.Boolean({ description: 'Report what would be freed; change nothing' })),
    workers: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_WORKERS, description: 'Sweeps running at once' })),
    time_window: Type.Optional(Type.Integer({ minimum: 0, maximum: 876_000, description: 'Hours: nothing created or linked more recently is collected (default gc.timeWindowHours)' })),
  },
  { additionalProperties: false },
);

const ScheduleObj = Type.Object(
  {
    type: Type.Enum([...SCHEDULE_TYPES], { description: 'Manual runs now; None removes the schedule; Hourly, Daily, Weekly use Harbor’s crons unless cron is given; Custom needs cron' }),
    cron: Type.Optional(Type.String({ maxLength: 256, description: 'Cron in UTC: six fields (seconds first) or five' })),
    next_scheduled_time: Type.Optional(Type.String({ description: 'Read-only; ignored' })),
  },
  { additionalProperties: false },
);

/** Harbor's Schedule as clients send it: the read-only fields are accepted and ignored. */
const ScheduleBody = Type.Object(
  {
    schedule: ScheduleObj,
    parameters: Type.Optional(Parameters),
    id: Type.Optional(Type.Integer()),
    status: Type.Optional(Type.String()),
    creation_time: Type.Optional(Type.String()),
    update_time: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
type ScheduleBody = Static<typeof ScheduleBody>;

const GcHistoryJson = Type.Object({
  id: Type.Integer(),
  job_name: Type.String(),
  job_kind: Type.String({ description: 'MANUAL or SCHEDULE' }),
  job_parameters: Type.String({ description: 'The parameters as JSON text' }),
  schedule: Type.Object({ type: Type.String(), cron: Type.String(), next_scheduled_time: Type.Optional(Type.String()) }),
  job_status: Type.String({ description: 'Pending, Running, Success, Error or Stopped' }),
  deleted: Type.Boolean(),
  creation_time: Type.String({ format: 'date-time' }),
  update_time: Type.String({ format: 'date-time' }),
  trigger: Type.String({ description: 'MANUAL (API), SCHEDULE (cron), CLI (berth gc) or START (gc.runAtStart)' }),
  dry_run: Type.Boolean(),
  start_time: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  end_time: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  deleted_artifacts: Type.Integer({ description: 'Untagged artifacts deleted (would be, in a dry run)' }),
  deleted_blobs: Type.Integer({ description: 'Blobs deleted (would be, in a dry run)' }),
  freed_space: Type.Integer({ description: 'Bytes freed (would be, in a dry run)' }),
  examined_blobs: Type.Integer(),
  error: Type.Union([Type.String(), Type.Null()]),
});

const GcScheduleJson = Type.Object({
  id: Type.Integer(),
  job_name: Type.String(),
  job_kind: Type.String(),
  job_parameters: Type.String(),
  schedule: Type.Object({ type: Type.String(), cron: Type.String(), next_scheduled_time: Type.Optional(Type.String()) }),
  parameters: Type.Object({}, { additionalProperties: true }),
  job_status: Type.String(),
  deleted: Type.Boolean(),
  creation_time: Type.Optional(Type.String({ format: 'date-time' })),
  update_time: Type.Optional(Type.String({ format: 'date-time' })),
});

const ErrorsJson = Type.Object({ errors: Type.Array(Type.Object({ code: Type.String(), message: Type.String() })) });
const errorResponses = { 400: ErrorsJson, 401: ErrorsJson, 403: ErrorsJson, 404: ErrorsJson, 409: ErrorsJson };

const GcIdParams = Type.Object({ gc_id: Type.String({ description: 'The run id' }) });
type GcIdParams = Static<typeof GcIdParams>;
const PageQuery = Type.Object({
  page: Type.Optional(Type.String()),
  page_size: Type.Optional(Type.String()),
  q: Type.Optional(Type.String({ description: 'Accepted for compatibility; not used' })),
  sort: Type.Optional(Type.String({ description: 'Accepted for compatibility; newest first' })),
});
type PageQuery = Static<typeof PageQuery>;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function gcHistoryJson(run: GcRunView): Static<typeof GcHistoryJson> {
  const scheduled = run.trigger === 'SCHEDULE';
  return {
    id: run.id,
    job_name: 'GARBAGE_COLLECTION',
    job_kind: scheduled ? 'SCHEDULE' : 'MANUAL',
    job_parameters: JSON.stringify(run.parameters),
    schedule: { type: scheduled ? 'Schedule' : 'Manual', cron: '' },
    job_status: run.status,
    deleted: false,
    creation_time: new Date(run.createdAt).toISOString(),
    update_time: new Date(run.finishedAt ?? run.updatedAt).toISOString(),
    trigger: run.trigger,
    dry_run: run.parameters.dry_run === true,
    start_time: iso(run.startedAt),
    end_time: iso(run.finishedAt),
    deleted_artifacts: run.counters.deletedArtifacts,
    deleted_blobs: run.counters.deletedBlobs,
    freed_space: run.counters.freedBytes,
    examined_blobs: run.counters.examinedBlobs,
    error: run.error,
  };
}

function scheduleJson(schedule: GcScheduleView): Static<typeof GcScheduleJson> {
  return harborScheduleJson('GARBAGE_COLLECTION', schedule) as Static<typeof GcScheduleJson>;
}

function gcId(raw: string): number {
  return numericPathId(raw, 'gc_id');
}

export async function gcRoutes(api: FastifyInstance, deps: GcRoutesDeps): Promise<void> {
  const { runs, access } = deps;
  const tags = ['gc'];
  // Authorisation before anything about the request is judged: non-admins get 403 whatever they sent.
  const allowed = (action: Action) => async (request: FastifyRequest) => {
    access.requireSystem(request, 'garbage-collection', action);
  };

  api.get(
    '/system/gc/schedule',
    {
      onRequest: allowed('read'),
      schema: { tags, operationId: 'getGCSchedule', summary: 'The garbage collection schedule (type None when there is none)', response: { 200: GcScheduleJson, ...errorResponses } },
    },
    async () => scheduleJson(await runs.getSchedule()),
  );

  const applySchedule = async (body: ScheduleBody) => runs.applySchedule(body.schedule.type, body.schedule.cron, body.parameters ?? {});

  api.post<{ Body: ScheduleBody }>(
    '/system/gc/schedule',
    {
      onRequest: allowed('create'),
      schema: {
        tags,
        operationId: 'createGCSchedule',
        summary: 'Run garbage collection now (type Manual; Location names the run) or set its schedule',
        body: ScheduleBody,
        response: { 201: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const id = await applySchedule(request.body);
      if (id !== undefined) reply.header('location', `/api/v2.0/system/gc/${id}`);
      return reply.code(201).send();
    },
  );

  api.put<{ Body: ScheduleBody }>(
    '/system/gc/schedule',
    {
      onRequest: allowed('update'),
      schema: {
        tags,
        operationId: 'updateGCSchedule',
        summary: 'Set or remove the garbage collection schedule (type Manual runs now)',
        body: ScheduleBody,
        response: { 200: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const id = await applySchedule(request.body);
      if (id !== undefined) reply.header('location', `/api/v2.0/system/gc/${id}`);
      return reply.code(200).send();
    },
  );

  api.get<{ Querystring: PageQuery }>(
    '/system/gc',
    {
      onRequest: allowed('list'),
      schema: { tags, operationId: 'getGCHistory', summary: 'Garbage collection runs, newest first', querystring: PageQuery, response: { 200: Type.Array(GcHistoryJson), ...errorResponses } },
    },
    async (request, reply) => {
      const page = pageParams(request.query);
      const { total, runs: items } = await runs.list(page.offset, page.pageSize);
      setPageHeaders(request, reply, page, total);
      return items.map(gcHistoryJson);
    },
  );

  api.get<{ Params: GcIdParams }>(
    '/system/gc/:gc_id',
    {
      onRequest: allowed('read'),
      schema: { tags, operationId: 'getGC', summary: 'One garbage collection run', params: GcIdParams, response: { 200: GcHistoryJson, ...errorResponses } },
    },
    async (request) => gcHistoryJson(await runs.get(gcId(request.params.gc_id))),
  );

  api.put<{ Params: GcIdParams }>(
    '/system/gc/:gc_id',
    {
      onRequest: allowed('stop'),
      schema: {
        tags,
        operationId: 'stopGC',
        summary: 'Stop a pending or running garbage collection (between two batches; what it did stays consistent)',
        params: GcIdParams,
        response: { 200: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      await runs.stop(gcId(request.params.gc_id));
      return reply.code(200).send();
    },
  );

  api.get<{ Params: GcIdParams }>(
    '/system/gc/:gc_id/log',
    {
      onRequest: allowed('read'),
      schema: { tags, operationId: 'getGCLog', summary: 'The log of a garbage collection run (text)', params: GcIdParams, response: { 200: Type.String(), ...errorResponses } },
    },
    async (request, reply) => reply.header('content-type', 'text/plain; charset=utf-8').send(await runs.log(gcId(request.params.gc_id))),
  );
}
