import type { FastifyInstance } from 'fastify';
import type { Config } from './config/schema.ts';
import { parseAddr, resolveDataPath } from './config/load.ts';
import { createDatabase, type DatabaseHandle } from './platform/db/database.ts';
import { createHttpServer } from './platform/http/server.ts';
import { Metrics } from './platform/http/metrics.ts';
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
import { buildIam } from './iam/build.ts';
import { apiAuthHook } from './iam/request-auth.ts';
import { robotRoutes } from './iam/robot-routes.ts';
import { registerSessionJobs, sessionRoutes } from './iam/sessions.ts';
import { tokenRoutes } from './iam/registry-auth.ts';
import { userRoutes } from './iam/user-routes.ts';
import { useManagementApiConventions } from './platform/http/api.ts';
import { QuotaLedger } from './projects/quota-ledger.ts';
import { projectRoutes } from './projects/routes.ts';
import { registryApiRoutes } from './registry/api-routes.ts';
import { openApiOptions, systemRoutes } from './system/routes.ts';

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
  });
  const store = new RegistryStore(database.db, Date.now, config.auth.enabled ? new QuotaLedger() : undefined);
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

  const iam = await buildIam(config, database.db, http.log);

  // ── issue 4 capabilities: each section is edited only by its owner ──
  // gc: build services here
  // end gc
  // retention: build services here
  // end retention
  // immutability: build services here
  // end immutability

  await http.register(async (scope) => registryRoutes(scope, { ...registry, guard: iam.registryGuard }));
  await http.register(async (scope) => {
    // Sessions serve the management API, which always needs a login; tokens only serve /v2 with auth on.
    if (iam.enabled) await tokenRoutes(scope, { tokens: iam.tokens, authenticator: iam.authenticator, projects: iam.projects, access: iam.access });
    await sessionRoutes(scope, { sessions: iam.sessions, authenticator: iam.authenticator, externalUrl: config.server.externalUrl });
  });
  await http.register(
    async (api) => {
      useManagementApiConventions(api);
      await api.register(swagger, openApiOptions(config));
      api.addHook('onRequest', apiAuthHook({ authenticator: iam.authenticator, sessions: iam.sessions }));
      await systemRoutes(api, { config, database: database.db, dialect: database.dialect });
      await userRoutes(api, { users: iam.users, access: iam.access, authenticator: iam.authenticator, sessions: iam.sessions });
      await robotRoutes(api, { robots: iam.robots, access: iam.access });
      await projectRoutes(api, { projects: iam.projects, access: iam.access, creation: config.auth.projectCreation });
      await registryApiRoutes(api, { db: database.db, store, manifests: registry.manifests, access: iam.access, blobs: blobStore });
      // gc: routes
      // end gc routes
      // retention: routes
      // end retention routes
      // immutability: routes
      // end immutability routes
      // jobservice: routes
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
  // gc: jobs
  // end gc jobs
  // retention: jobs
  // end retention jobs

  return {
    config,
    http,
    database,
    uploads,
    jobs,
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
        await database.close();
      }
    },
  };
}
