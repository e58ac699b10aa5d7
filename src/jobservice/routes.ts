/**
 * Harbor's job-service dashboard API (swagger groups `jobservice` and `schedule`) plus Berth's
 * job listing, under /api/v2.0:
 *
 *   GET  /jobservice/pools                     the worker pools of every live node
 *   GET  /jobservice/pools/{pool_id}/workers   its workers, busy (with their job) or idle; pool_id may be `all`
 *   GET  /jobservice/queues                    per job kind: pending count, latency, paused, and Berth's counts
 *   PUT  /jobservice/queues/{job_type}         {action: stop|pause|resume}; `all` = every queue
 *   PUT  /jobservice/jobs/{job_id}             stop a job (Harbor sends no body; Berth takes {action: "stop"}); `all` = every running job
 *   GET  /jobservice/jobs/{job_id}/log         the job's log as text
 *   GET  /jobservice/jobs, /jobservice/jobs/{job_id}   Berth: jobs newest first, filtered by kind and status
 *   GET  /schedules                            the cron schedules
 *   GET  /schedules/{job_type}/paused          whether the scheduler (`all`) or one schedule is paused
 *
 * Authorisation follows Harbor: the system resource `jobservice-monitor`, action `list` to read
 * and `stop` to act (system admins, and robots granted it); `/schedules/…/paused` needs a login only.
 *
 * It lives in its own folder rather than in src/platform/jobs because it is a capability over
 * the platform: it authorises through src/iam, which the platform must not import.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl } from '../iam/access.ts';
import { badRequest, pageParams, setPageHeaders } from '../platform/http/api.ts';
import type { Job, JobStatus } from '../platform/jobs/queue.ts';
import type { JobService } from '../platform/jobs/service.ts';
import { ALL, JOB_STATUSES, JobMonitor, QUEUE_ACTIONS, scheduleId } from './monitor.ts';

export interface JobServiceRoutesDeps {
  readonly jobs: JobService;
  readonly access: AccessControl;
}

// ── schemas ───────────────────────────────────────────────────────────────

const Time = Type.String({ format: 'date-time' });
const ErrorsJson = Type.Object({ errors: Type.Array(Type.Object({ code: Type.String(), message: Type.String() })) });
const errorResponses = { 400: ErrorsJson, 401: ErrorsJson, 403: ErrorsJson, 404: ErrorsJson };

const WorkerPool = Type.Object({
  worker_pool_id: Type.String(),
  pid: Type.Integer(),
  host: Type.String(),
  start_at: Type.Union([Time, Type.Null()]),
  heartbeat_at: Time,
  concurrency: Type.Integer(),
  job_kinds: Type.Array(Type.String(), { description: 'Berth: the job kinds this pool has handlers for' }),
});

const Worker = Type.Object({
  id: Type.String(),
  pool_id: Type.String(),
  job_name: Type.Optional(Type.String({ description: 'The job kind' })),
  job_id: Type.Optional(Type.String()),
  start_at: Type.Optional(Time),
  checkin_at: Type.Optional(Time),
});

const JobQueue = Type.Object({
  job_type: Type.String(),
  count: Type.Integer({ description: 'Pending jobs (for SCHEDULER: schedules due but not fired)' }),
  latency: Type.Integer({ description: 'Seconds the oldest due pending job has waited' }),
  paused: Type.Boolean(),
  running: Type.Integer(),
  succeeded: Type.Integer(),
  failed: Type.Integer(),
  cancelled: Type.Integer(),
  handled: Type.Boolean({ description: 'Whether this node has a handler for the kind' }),
});

const QueueActionBody = Type.Object({ action: Type.String({ description: QUEUE_ACTIONS.join(', ') }) }, { additionalProperties: false });
const JobActionBody = Type.Object({ action: Type.String({ description: 'stop' }) }, { additionalProperties: false });

const JobJson = Type.Object({
  id: Type.Integer(),
  kind: Type.String(),
  status: Type.String(),
  priority: Type.Integer(),
  attempts: Type.Integer(),
  max_attempts: Type.Integer(),
  dedupe_key: Type.Union([Type.String(), Type.Null()]),
  run_at: Time,
  creation_time: Time,
  start_time: Type.Union([Time, Type.Null()]),
  end_time: Type.Union([Time, Type.Null()]),
  last_error: Type.Union([Type.String(), Type.Null()]),
  cancel_requested: Type.Boolean(),
  worker: Type.Union([Type.String(), Type.Null()], { description: 'The worker pool holding the job while it runs' }),
});

const ScheduleTask = Type.Object({
  id: Type.Integer(),
  vendor_type: Type.String({ description: 'The job kind the schedule enqueues' }),
  vendor_id: Type.Integer(),
  cron: Type.String(),
  name: Type.String(),
  next_run_time: Type.Union([Time, Type.Null()]),
  last_run_time: Type.Union([Time, Type.Null()]),
  paused: Type.Boolean(),
});

const PageQuery = { page: Type.Optional(Type.String()), page_size: Type.Optional(Type.String()) };
const PoolParams = Type.Object({ pool_id: Type.String({ description: "The pool id from GET /jobservice/pools, or 'all'" }) });
const QueueParams = Type.Object({ job_type: Type.String({ description: "A job kind, SCHEDULER, or 'all'" }) });
const JobParams = Type.Object({ job_id: Type.String({ description: 'The job id' }) });
const StopJobParams = Type.Object({ job_id: Type.String({ description: "The job id, or 'all' for every running job" }) });
const ListQuery = Type.Object({
  ...PageQuery,
  kind: Type.Optional(Type.String({ description: 'Only jobs of this kind' })),
  status: Type.Optional(Type.String({ description: JOB_STATUSES.join(', ') })),
});

// ── mapping ───────────────────────────────────────────────────────────────

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : iso(ms));
/** The far-future next run of a schedule that never fires again. */
const NEVER = Number.MAX_SAFE_INTEGER;

function jobJson(job: Job): Static<typeof JobJson> {
  return {
    id: job.id,
    kind: job.kind,
    status: job.status,
    priority: job.priority,
    attempts: job.attempts,
    max_attempts: job.maxAttempts,
    dedupe_key: job.dedupeKey,
    run_at: iso(job.runAt),
    creation_time: iso(job.createdAt),
    start_time: isoOrNull(job.startedAt),
    end_time: isoOrNull(job.finishedAt),
    last_error: job.lastError,
    cancel_requested: job.cancelRequested,
    worker: job.status === 'running' ? job.leaseOwner : null,
  };
}

function jobId(raw: string): number {
  if (!/^[0-9]{1,15}$/.test(raw)) throw badRequest(`job_id must be a positive whole number, got "${raw}"`);
  return Number(raw);
}

// ── routes ────────────────────────────────────────────────────────────────

export async function jobServiceRoutes(api: FastifyInstance, deps: JobServiceRoutesDeps): Promise<void> {
  const { access } = deps;
  const monitor = new JobMonitor({ jobs: deps.jobs });
  const tags = ['jobservice'];
  const canList = async (request: FastifyRequest) => access.requireSystem(request, 'jobservice-monitor', 'list');
  const canStop = async (request: FastifyRequest) => access.requireSystem(request, 'jobservice-monitor', 'stop');

  api.get(
    '/jobservice/pools',
    { onRequest: canList, schema: { tags, operationId: 'getWorkerPools', summary: 'The worker pools of every live node', response: { 200: Type.Array(WorkerPool), ...errorResponses } } },
    async () =>
      (await monitor.pools()).map((p) => ({
        worker_pool_id: p.id,
        pid: p.pid,
        host: p.host,
        start_at: isoOrNull(p.startedAt),
        heartbeat_at: iso(p.heartbeatAt),
        concurrency: p.concurrency,
        job_kinds: [...p.kinds],
      })),
  );

  api.get<{ Params: Static<typeof PoolParams> }>(
    '/jobservice/pools/:pool_id/workers',
    {
      onRequest: canList,
      schema: {
        tags,
        operationId: 'getWorkers',
        summary: 'The workers of a pool: busy ones with the job each runs, then idle ones',
        params: PoolParams,
        response: { 200: Type.Array(Worker), ...errorResponses },
      },
    },
    async (request) =>
      (await monitor.workers(request.params.pool_id)).map((w) => ({
        id: w.id,
        pool_id: w.poolId,
        ...(w.job ? { job_name: w.job.kind, job_id: String(w.job.id), start_at: iso(w.job.startedAt), ...(w.job.checkedInAt !== undefined ? { checkin_at: iso(w.job.checkedInAt) } : {}) } : {}),
      })),
  );

  api.get(
    '/jobservice/queues',
    {
      onRequest: canList,
      schema: {
        tags,
        operationId: 'listJobQueues',
        summary: 'The job queues (one per job kind, and SCHEDULER): pending jobs, latency, paused, and counts by status',
        response: { 200: Type.Array(JobQueue), ...errorResponses },
      },
    },
    async () =>
      (await monitor.queues()).map((q) => ({
        job_type: q.jobType,
        count: q.count,
        latency: q.latencySeconds,
        paused: q.paused,
        running: q.running,
        succeeded: q.succeeded,
        failed: q.failed,
        cancelled: q.cancelled,
        handled: q.handled,
      })),
  );

  api.put<{ Params: Static<typeof QueueParams>; Body: Static<typeof QueueActionBody> }>(
    '/jobservice/queues/:job_type',
    {
      onRequest: canStop,
      schema: {
        tags,
        operationId: 'actionPendingJobs',
        summary: "Stops (cancels the pending jobs of), pauses or resumes a job queue, or 'all' of them",
        params: QueueParams,
        body: QueueActionBody,
        response: {
          200: Type.Object({ job_types: Type.Array(Type.String()), action: Type.String(), cancelled: Type.Integer({ description: 'Pending jobs cancelled by stop' }) }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const result = await monitor.actOnQueue(request.params.job_type, request.body.action);
      return { job_types: [...result.jobTypes], action: result.action, cancelled: result.cancelled };
    },
  );

  api.put<{ Params: Static<typeof StopJobParams>; Body: Static<typeof JobActionBody> | undefined }>(
    '/jobservice/jobs/:job_id',
    {
      onRequest: canStop,
      schema: {
        tags,
        operationId: 'stopRunningJob',
        summary: "Stops a job, pending or running ('all': every running job); a finished job stays as it is",
        params: StopJobParams,
        body: JobActionBody,
        response: { 200: Type.Union([JobJson, Type.Object({ stopped: Type.Integer() })]), ...errorResponses },
      },
      // Harbor's clients send no body: that means stop.
      preValidation: async (request) => {
        if (request.body === undefined || request.body === null) request.body = { action: 'stop' };
      },
    },
    async (request) => {
      const action = request.body?.action.trim().toLowerCase();
      if (action !== 'stop') throw badRequest(`action must be "stop", got ${JSON.stringify(request.body?.action)}`);
      if (request.params.job_id.toLowerCase() === ALL) return { stopped: await monitor.stopRunningJobs() };
      return jobJson(await monitor.stopJob(jobId(request.params.job_id)));
    },
  );

  api.get<{ Params: Static<typeof JobParams> }>(
    '/jobservice/jobs/:job_id/log',
    {
      onRequest: canList,
      schema: {
        tags,
        operationId: 'actionGetJobLog',
        summary: "A job's log as text, one line per entry: time, level, message",
        params: JobParams,
        response: { 200: Type.String(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const lines = await monitor.log(jobId(request.params.job_id));
      const text = lines.map((l) => `${iso(l.at)} [${l.level.toUpperCase()}] ${l.message}\n`).join('');
      return reply.header('content-type', 'text/plain; charset=utf-8').send(text);
    },
  );

  api.get<{ Querystring: Static<typeof ListQuery> }>(
    '/jobservice/jobs',
    {
      onRequest: canList,
      schema: {
        tags,
        operationId: 'listJobServiceJobs',
        summary: 'Jobs, newest first, optionally of one kind and in one status (X-Total-Count has the total)',
        querystring: ListQuery,
        response: { 200: Type.Array(JobJson), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { kind, status } = request.query;
      if (status !== undefined && !(JOB_STATUSES as readonly string[]).includes(status)) throw badRequest(`status must be one of ${JOB_STATUSES.join(', ')}, got "${status}"`);
      const page = pageParams(request.query);
      const filter = { ...(kind !== undefined && kind !== '' ? { kind } : {}), ...(status !== undefined ? { status: status as JobStatus } : {}) };
      const { total, items } = await monitor.list(filter, page.offset, page.pageSize);
      setPageHeaders(request, reply, page, total);
      return items.map(jobJson);
    },
  );

  api.get<{ Params: Static<typeof JobParams> }>(
    '/jobservice/jobs/:job_id',
    { onRequest: canList, schema: { tags, operationId: 'getJobServiceJob', summary: 'One job', params: JobParams, response: { 200: JobJson, ...errorResponses } } },
    async (request) => jobJson(await monitor.job(jobId(request.params.job_id))),
  );

  api.get<{ Querystring: { page?: string; page_size?: string } }>(
    '/schedules',
    {
      onRequest: canList,
      schema: {
        tags: ['schedule'],
        operationId: 'listSchedules',
        summary: 'The cron schedules and the job kind each enqueues',
        querystring: Type.Object(PageQuery),
        response: { 200: Type.Array(ScheduleTask), ...errorResponses },
      },
    },
    async (request, reply) => {
      const page = pageParams(request.query);
      const all = await monitor.schedules();
      setPageHeaders(request, reply, page, all.length);
      return all.slice(page.offset, page.offset + page.pageSize).map((s) => ({
        id: scheduleId(s.name),
        vendor_type: s.kind,
        vendor_id: 0,
        cron: s.cron,
        name: s.name,
        next_run_time: s.nextRunAt >= NEVER ? null : iso(s.nextRunAt),
        last_run_time: isoOrNull(s.lastRunAt),
        paused: s.paused,
      }));
    },
  );

  api.get<{ Params: Static<typeof QueueParams> }>(
    '/schedules/:job_type/paused',
    {
      onRequest: async (request) => {
        access.requireLogin(request);
      },
      schema: {
        tags: ['schedule'],
        operationId: 'getSchedulePaused',
        summary: "Whether the scheduler ('all') or one schedule (by name) is paused",
        params: QueueParams,
        response: { 200: Type.Object({ paused: Type.Boolean() }), ...errorResponses },
      },
    },
    async (request) => ({ paused: await monitor.schedulePaused(request.params.job_type) }),
  );
}
