import type { FastifyInstance } from 'fastify';
import type { Config } from './config/schema.ts';
import { parseAddr, resolveDataPath } from './config/load.ts';
import { createDatabase, type DatabaseHandle } from './platform/db/database.ts';
import { createHttpServer } from './platform/http/server.ts';
import { Metrics } from './platform/http/metrics.ts';
import type { WorkerPool } from './platform/jobs/worker.ts';
import { JobService } from './platform/jobs/service.ts';
import { FilesystemBlobStore } from './platform/storage/filesystem.ts';
import { BlobService } from './registry/blobs.ts';
import { registerRegistryJobs } from './registry/jobs.ts';
import { ListingService } from './registry/listings.ts';
import { ManifestService } from './registry/manifests.ts';
import { registryRoutes } from './registry/routes.ts';
import { RegistryStore } from './registry/store.ts';
import { UploadService } from './registry/uploads.ts';
import swagger from '@fastify/swagger';
import { buildIam, type Iam } from './iam/build.ts';
import { apiAuthHook } from './iam/request-auth.ts';
import { robotRoutes } from './iam/robot-routes.ts';
import { registerSessionJobs, sessionRoutes } from './iam/sessions.ts';
import { tokenRoutes } from './iam/registry-auth.ts';
import { userRoutes } from './iam/user-routes.ts';
import { buildAudit } from './audit/build.ts';
import { EventBus, SYSTEM_ACTOR } from './platform/events/bus.ts';
import { useManagementApiConventions } from './platform/http/api.ts';
import { announceApiOperations } from './platform/http/operation-events.ts';
import { QuotaLedger } from './projects/quota-ledger.ts';
import { projectRoutes } from './projects/routes.ts';
import { registryApiRoutes } from './registry/api-routes.ts';
import { openApiOptions, systemRoutes } from './system/routes.ts';
import { registerGcJobs, startGcAtBoot } from './gc/jobs.ts';
import { gcRoutes } from './gc/routes.ts';
import { GcRuns } from './gc/runs.ts';
import { GcService } from './gc/service.ts';
import { GcStore } from './gc/store.ts';
import { jobServiceRoutes } from './jobservice/routes.ts';
import { RegistryApiStore } from './registry/api-store.ts';
import { immutabilityRoutes } from './retention/immutability-routes.ts';
import { ImmutabilityService } from './retention/immutability-service.ts';
import { ImmutabilityStore } from './retention/immutability-store.ts';
import type { ImmutableRule } from './retention/immutability.ts';
import { registerRetentionJobs } from './retention/jobs.ts';
import { PullRecorder } from './retention/pull-times.ts';
import { retentionRoutes } from './retention/routes.ts';
import { RetentionService } from './retention/service.ts';
import { createDeliveryPool, registerWebhookJobs } from './webhooks/jobs.ts';
import { webhookRoutes } from './webhooks/routes.ts';
import { SecretBox } from './webhooks/secrets.ts';
import { registryHostOf, WebhookService } from './webhooks/service.ts';
import { WebhookStore } from './webhooks/store.ts';

export interface AppOptions {
  /** Where JSON logs go; stdout when absent. */
  logStream?: NodeJS.WritableStream;
  /** Collect process-wide default metrics (off in tests that build many apps in one process). */
  processMetrics?: boolean;
}

export interface App {
  readonly config: Config;
  readonly http: FastifyInstance;
  readonly database: DatabaseHandle;
  readonly uploads: UploadService;
  /** The job queue, this node's workers and the cron scheduler. */
  readonly jobs: JobService;
  /** The worker pool that delivers webhooks (apart from the jobs' pool, see src/webhooks/jobs.ts). */
  readonly webhookDeliveries: WorkerPool;
  /** Users, robots, sessions, projects, tokens and the authoriser. */
  readonly iam: Iam;
  /** Domain events (pushes, pulls, API changes, logins …). */
  readonly events: EventBus;
  /** Listens on config.server.addr; resolves to the base URL (with the real port when 0 was asked). */
  start(): Promise<string>;
  /** Graceful stop: refuse new requests and finish those in flight, stop background jobs, close the DB. */
  stop(): Promise<void>;
}

/** The composition root: config → platform → capabilities → HTTP server. */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  // The logger comes with the HTTP server, built after the database is migrated.
  let warnIdleConnectionError = (_error: Error): void => {};
  const database = createDatabase({
    url: config.database.url,
    sqliteFile: resolveDataPath(config, 'berth.db'),
    poolSize: config.database.poolSize,
    onIdleConnectionError: (error) => warnIdleConnectionError(error),
  });
  await database.migrate();

  const blobStore = new FilesystemBlobStore(config.storage.filesystemRoot || resolveDataPath(config, 'storage'));
  await blobStore.init();

  const metrics = new Metrics({ collectProcessMetrics: options.processMetrics ?? true });
  const http = createHttpServer({
    logLevel: config.log.level,
    maxHeaderBytes: config.server.maxHeaderBytes,
    metrics,
    ...(options.logStream ? { logStream: options.logStream } : {}),
  });

  // Domain events: what happened, for the audit log and webhooks.
  const events = new EventBus({ log: http.log.child({ component: 'events' }) });

  warnIdleConnectionError = (error) => http.log.warn({ component: 'database', err: error.message }, 'an idle database connection failed; the pool replaces it');

  const jobs = new JobService({
    db: database.db,
    concurrency: config.jobs.concurrency,
    pollIntervalMs: config.jobs.pollIntervalMs,
    leaseMs: config.jobs.leaseSeconds * 1000,
    logLinesPerJob: config.jobs.logLinesPerJob,
    schedulerTickMs: config.jobs.schedulerTickMs,
    keepFinishedDays: config.jobs.keepFinishedDays,
    stopTimeoutMs: config.server.shutdownTimeoutSeconds * 1000,
    logger: http.log.child({ component: 'jobs' }),
    // GC, retention and other runs end up in the audit log and webhooks through this event.
    onJobFinished: (job) =>
      events.emit({
        type: 'job.finished',
        at: Date.now(),
        actor: SYSTEM_ACTOR,
        jobId: job.id,
        kind: job.kind,
        status: job.status,
        ...(job.error !== undefined ? { error: job.error } : {}),
      }),
  });
  const store = new RegistryStore(database.db, Date.now, config.auth.enabled ? new QuotaLedger({ events }) : undefined);
  const uploads = new UploadService({
    store,
    blobs: blobStore,
    metrics,
    limits: { maxBlobBytes: config.uploads.maxBlobBytes, expireAfterMs: config.uploads.expireAfterSeconds * 1000, mountWithoutFrom: !config.auth.enabled },
  });
  const registry = {
    blobs: new BlobService({ store, blobs: blobStore }),
    uploads,
    manifests: new ManifestService({
      store,
      limits: { maxBytes: config.registry.manifestMaxBytes, validateReferences: config.registry.validateReferences },
    }),
    listings: new ListingService({
      store,
      limits: { tagsPageMax: config.registry.tagsPageMax, catalogPageMax: config.registry.catalogPageMax, referrersPageMax: config.registry.referrersPageMax },
    }),
    metrics,
    externalUrl: config.server.externalUrl,
  };

  const iam = await buildIam(config, database.db, http.log, events);

  // ── issue 5 capabilities: each section is edited only by its owner ──
  // audit: the audit log (src/audit): recorder on the events (batched writes), hash chain, syslog forwarding, purge jobs; audit.stop() flushes
  const audit = await buildAudit(config, { db: database.db, events, jobs, log: http.log, metrics: metrics.registry });
  // Flushed in stop(), after the jobs have stopped: a job that ends during shutdown is still recorded.
  // end audit
  // webhooks: per-project policies (src/webhooks); the bus subscriber only queues; deliveries run on a worker pool of their own (webhooks.concurrency), started with the server and stopped before the database closes
  const webhookSecrets = new SecretBox(config.webhooks.secretKeyFile || resolveDataPath(config, 'secret', 'webhook.key'));
  await webhookSecrets.init();
  const webhookRepositories = new RegistryApiStore(database.db);
  const webhooks = new WebhookService({
    db: database.db,
    store: new WebhookStore(database.db),
    queue: jobs.queue,
    projects: iam.cachedProjects,
    repositoryCreatedAt: async (name) => (await webhookRepositories.findRepository(name))?.created_at,
    secrets: webhookSecrets,
    settings: config.webhooks,
    registryHost: () => registryHostOf(config.server.externalUrl, http.server.address(), config.server.addr),
    log: http.log.child({ component: 'webhooks' }),
  });
  webhooks.subscribe(events);
  registerWebhookJobs(jobs, webhooks);
  const webhookDeliveries = createDeliveryPool(webhooks, {
    queue: jobs.queue,
    concurrency: config.webhooks.enabled ? config.webhooks.concurrency : 0,
    pollIntervalMs: config.jobs.pollIntervalMs,
    leaseMs: config.jobs.leaseSeconds * 1000,
    stopTimeoutMs: config.server.shutdownTimeoutSeconds * 1000,
    logger: http.log.child({ component: 'webhooks' }),
  });
  http.addHook('onListen', async () => webhookDeliveries.start());
  http.addHook('onClose', async () => {
    await webhooks.drain();
    webhooks.stop();
    await webhookDeliveries.stop();
  });
  // end webhooks

  // ── issue 4 capabilities: each section is edited only by its owner ──
  // gc: online garbage collection (src/gc); the registry's manifest PUT refuses references a collection took first; trash of a crashed run put back
  store.requireReferencesAtCommit(config.registry.validateReferences);
  const gcStore = new GcStore(database.db);
  const gc = new GcService({ store: gcStore, registry: store, blobs: blobStore });
  const gcRuns = new GcRuns({ db: database.db, store: gcStore, gc, jobs, defaultTimeWindowHours: config.gc.timeWindowHours });
  await gc.recoverTrash();
  // end gc
  // retention: tag retention (src/retention); pull times batched from the /v2 manifest GET path, flushed at stop
  // Immutable tags are never removed by retention: the immutability work replaces `retentionImmutable.rules`.
  const retentionImmutable: { rules: (projectId: number) => Promise<readonly ImmutableRule[]> } = { rules: async () => [] };
  const pullTimes = new PullRecorder({ db: database.db, onError: (err) => http.log.warn({ component: 'retention', err }, 'could not write pull times; retrying') });
  pullTimes.start();
  http.addHook('onClose', async () => pullTimes.stop());
  http.addHook('onClose', async () => iam.stop());
  const retention = new RetentionService({ db: database.db, registry: store, projects: iam.projects, jobs, immutableRules: (projectId) => retentionImmutable.rules(projectId) });
  // end retention
  // immutability: tag immutability rules (src/retention/immutability-*), a gate on the registry's tag and manifest writes, and what retention keeps
  const registryReads = new RegistryApiStore(database.db);
  const immutability = new ImmutabilityService({
    store: new ImmutabilityStore(database.db),
    projects: iam.projects,
    tagsOfManifest: async (repository, digest) => {
      const repositoryId = await store.findRepositoryId(repository);
      return repositoryId === undefined ? [] : (await registryReads.tagsOf(repositoryId, [digest])).map((t) => t.name);
    },
  });
  registry.manifests.addGates(immutability.gates);
  retentionImmutable.rules = (projectId) => immutability.rulesOf(projectId);
  // end immutability

  await http.register(async (scope) => registryRoutes(scope, { ...registry, guard: iam.registryGuard, onManifestPulled: pullTimes.record, events }));
  await http.register(async (scope) => {
    // Sessions serve the management API, which always needs a login; tokens only serve /v2 with auth on.
    if (iam.enabled) await tokenRoutes(scope, { tokens: iam.tokens, authenticator: iam.authenticator, projects: iam.cachedProjects, access: iam.access });
    await sessionRoutes(scope, { sessions: iam.sessions, authenticator: iam.authenticator, externalUrl: config.server.externalUrl });
  });
  await http.register(
    async (api) => {
      useManagementApiConventions(api);
      await api.register(swagger, openApiOptions(config));
      api.addHook('onRequest', apiAuthHook({ authenticator: iam.authenticator, sessions: iam.sessions }));
      announceApiOperations(api, events, '/api/v2.0');
      await systemRoutes(api, { config, database: database.db, dialect: database.dialect });
      await userRoutes(api, { users: iam.users, access: iam.access, authenticator: iam.authenticator, sessions: iam.sessions });
      await robotRoutes(api, { robots: iam.robots, access: iam.access });
      await projectRoutes(api, { projects: iam.projects, access: iam.access, creation: config.auth.projectCreation });
      await registryApiRoutes(api, { db: database.db, store, manifests: registry.manifests, access: iam.access, blobs: blobStore });
      // gc: Harbor's /system/gc API
      await gcRoutes(api, { runs: gcRuns, access: iam.access });
      // end gc routes
      // retention: routes
      await retentionRoutes(api, { retention, access: iam.access });
      // end retention routes
      // immutability: routes
      await immutabilityRoutes(api, { immutability, access: iam.access, projects: iam.projects });
      // end immutability routes
      // audit: routes (/audit-logs, /projects/{p}/logs, /auditlog-exts, exports, /system/audit/verify, /system/purgeaudit)
      await audit.routes(api, { access: iam.access, projects: iam.projects });
      // end audit routes
      // webhooks: routes
      await webhookRoutes(api, { webhooks, access: iam.access, projects: iam.projects });
      // end webhooks routes
      // jobservice: routes (Harbor's jobservice and schedule groups, src/jobservice)
      await jobServiceRoutes(api, { jobs, access: iam.access });
      // end jobservice routes
    },
    { prefix: '/api/v2.0' },
  );

  if (config.metrics.enabled) {
    http.get('/metrics', async (_request, reply) => {
      return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }

  registerRegistryJobs(jobs, { uploads, purgeIntervalSeconds: config.uploads.purgeIntervalSeconds });
  registerSessionJobs(jobs, { sessions: iam.sessions });
  // gc: run and schedule jobs; gc.runAtStart queues one now (workers take it once started)
  registerGcJobs(jobs, gcRuns);
  if (config.gc.runAtStart) await startGcAtBoot(gcRuns);
  // end gc jobs
  // retention: jobs
  registerRetentionJobs(jobs, retention);
  // end retention jobs

  return {
    config,
    http,
    database,
    uploads,
    jobs,
    webhookDeliveries,
    iam,
    events,
    async start() {
      const { host, port } = parseAddr(config.server.addr);
      await http.listen({ host, port });
      await jobs.start();
      const address = http.server.address();
      const realPort = typeof address === 'object' && address ? address.port : port;
      const shownHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
      return `http://${shownHost}:${realPort}`;
    },
    async stop() {
      const timeout = setTimeout(() => http.server.closeAllConnections(), config.server.shutdownTimeoutSeconds * 1000);
      try {
        await Promise.all([http.close(), jobs.stop()]);
      } finally {
        clearTimeout(timeout);
        await audit.stop(config.server.shutdownTimeoutSeconds * 1000);
        await database.close();
      }
    },
  };
}
