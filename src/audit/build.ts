/**
 * Builds the audit capability from the configuration: the store, the recorder subscribed to the
 * domain events (unless audit.enabled is false), the syslog forwarder (audit.syslog), the purge
 * jobs and schedules (audit.retainDays, audit.maxEntries), the metrics, and the routes.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { Counter, Gauge, type Registry } from 'prom-client';
import { ConfigError, resolveDataPath } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { AccessControl } from '../iam/access.ts';
import type { Database } from '../platform/db/schema.ts';
import type { EventBus } from '../platform/events/bus.ts';
import { InvalidCronError, validateCron } from '../platform/jobs/scheduler.ts';
import type { JobService } from '../platform/jobs/service.ts';
import type { ProjectService } from '../projects/service.ts';
import { parseSyslogTarget, SyslogForwarder, type SyslogTarget } from './forward.ts';
import { AuditPurges, hasConfigSchedule } from './purge.ts';
import { purgeRoutes } from './purge-routes.ts';
import { AuditRecorder } from './recorder.ts';
import { auditRoutes } from './routes.ts';
import { AuditStore } from './store.ts';
import { storeWriter, ThreadedAuditWriter } from './writer.ts';

export interface AuditDeps {
  readonly db: Kysely<Database>;
  readonly events: EventBus;
  readonly jobs: JobService;
  readonly log: FastifyBaseLogger;
  /** Where the audit metrics are registered (the app's /metrics registry). */
  readonly metrics?: Registry;
}

export interface Audit {
  readonly store: AuditStore;
  /** Undefined when audit.enabled is false. */
  readonly recorder: AuditRecorder | undefined;
  readonly forwarder: SyslogForwarder | undefined;
  readonly purges: AuditPurges;
  /** Registers the audit-log and purge routes in the management API's scope. */
  routes(api: FastifyInstance, deps: { readonly access: AccessControl; readonly projects: ProjectService }): Promise<void>;
  /**
   * Writes every entry still buffered (retrying for up to `timeoutMs` while the database fails)
   * and closes the syslog connection. Call after the HTTP server and the job workers stopped,
   * before the database is closed.
   */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Checks what of the audit settings the schema alone cannot: audit.syslog (udp:// or tcp://
 * HOST:PORT) and, when a config purge is scheduled (retainDays or maxEntries set), audit.purgeCron.
 * Throws a ConfigError naming the key; returns the syslog target (undefined for none). Used at
 * start and by `berth config-check`.
 */
export function checkAuditConfig(config: Config, now = Date.now()): SyslogTarget | undefined {
  const settings = config.audit;
  let target: SyslogTarget | undefined;
  try {
    target = parseSyslogTarget(settings.syslog);
  } catch (err) {
    throw new ConfigError('audit.syslog', (err as Error).message);
  }
  if (hasConfigSchedule(settings)) {
    try {
      validateCron(settings.purgeCron, now);
    } catch (err) {
      if (err instanceof InvalidCronError) throw new ConfigError('audit.purgeCron', err.message);
      throw err;
    }
  }
  return target;
}

export async function buildAudit(config: Config, deps: AuditDeps): Promise<Audit> {
  const settings = config.audit;
  const log = deps.log.child({ component: 'audit' });
  const target = checkAuditConfig(config);

  const registers = deps.metrics ? [deps.metrics] : [];
  const written = new Counter({ name: 'berth_audit_entries_written_total', help: 'Audit entries written to the database.', registers });
  const writtenUrgently = new Counter({
    name: 'berth_audit_entries_written_urgently_total',
    help: 'Audit entries the request thread wrote because the writer thread had fallen behind (included in berth_audit_entries_written_total).',
    registers,
  });
  const dropped = new Counter({
    name: 'berth_audit_dropped_total',
    help: 'Audit entries lost: buffer-full (the database took none for too long), unwritable (refused by the database, or still unwritten at shutdown), forward-queue-full and forward-failed (not sent to syslog).',
    labelNames: ['reason'] as const,
    registers,
  });
  const forwarded = new Counter({ name: 'berth_audit_forwarded_total', help: 'Audit entries sent to the syslog receiver.', registers });

  const store = new AuditStore(deps.db);
  const forwarder = target
    ? new SyslogForwarder({
        target,
        maxQueue: settings.syslogQueueEntries,
        log,
        counters: {
          forwarded: (n) => forwarded.inc(n),
          dropped: (n, why) => dropped.inc({ reason: why === 'queue-full' ? 'forward-queue-full' : 'forward-failed' }, n),
        },
      })
    : undefined;
  const inline = storeWriter(store);
  const writer = settings.enabled && settings.writerThread
    ? new ThreadedAuditWriter({
        url: config.database.url,
        sqliteFile: resolveDataPath(config, 'berth.db'),
        wantEntries: forwarder !== undefined,
        nice: settings.writerThreadNice,
        onWarning: (message) => log.warn(message),
      })
    : inline;
  const recorder = settings.enabled
    ? new AuditRecorder({
        writer,
        // A writer thread starved by a busy server hands over to the request thread before the backlog nears the bound.
        ...(writer !== inline
          ? {
              // One transaction per batch of up to batchEntries (a backlog is written as several): each commit rewrites
              // the same leaf pages of the table and its five indexes, so 500 entries a commit cost about a fifth less
              // CPU per entry than 100 (measured). A push's write that meets the lock waits for one batch, a few ms.
              transactionEntries: settings.batchEntries,
              urgentWriter: inline,
              urgentAbove: Math.min(settings.batchEntries * 10, Math.floor(settings.bufferEntries / 4)),
              urgentAfterMs: Math.max(1000, settings.flushIntervalMs * 10),
            }
          : {}),
        flushIntervalMs: settings.flushIntervalMs,
        batchEntries: settings.batchEntries,
        maxBuffered: settings.bufferEntries,
        recordPulls: settings.recordPulls,
        log,
        counters: { written: (n) => written.inc(n), writtenUrgently: (n) => writtenUrgently.inc(n), dropped: (n, why) => dropped.inc({ reason: why }, n) },
        ...(forwarder ? { onWritten: (entries) => forwarder.enqueue(entries) } : {}),
      })
    : undefined;
  if (recorder) {
    new Gauge({
      name: 'berth_audit_buffered_entries',
      help: 'Audit entries waiting to be written.',
      registers,
      collect() {
        this.set(recorder.pending);
      },
    });
    recorder.subscribe(deps.events);
    recorder.start();
  }

  const purges = new AuditPurges({ store, jobs: deps.jobs });
  purges.register();
  try {
    await purges.configure({ retainDays: settings.retainDays, maxEntries: settings.maxEntries, cron: settings.purgeCron });
  } catch (err) {
    if (err instanceof InvalidCronError) throw new ConfigError('audit.purgeCron', err.message);
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    store,
    recorder,
    forwarder,
    purges,
    async routes(api, routeDeps) {
      await auditRoutes(api, { store, access: routeDeps.access, projects: routeDeps.projects });
      await purgeRoutes(api, { purges, access: routeDeps.access });
    },
    stop(timeoutMs = 10_000) {
      stopped ??= (async () => {
        await recorder?.stop(timeoutMs);
        await writer.close();
        await forwarder?.stop(Math.min(timeoutMs, 2000));
      })();
      return stopped;
    },
  };
}
