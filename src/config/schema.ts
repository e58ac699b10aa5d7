/**
 * The one configuration schema. Every key has a type, a default and a line of documentation;
 * `config/example.yaml` documents the same keys (a test keeps the two in step).
 * Precedence, lowest first: defaults < YAML file < BERTH_* environment < CLI flags.
 */

interface LeafBase<T> {
  readonly kind: 'string' | 'integer' | 'boolean' | 'enum';
  readonly default: T;
  readonly doc: string;
}
export interface StringLeaf extends LeafBase<string> { readonly kind: 'string' }
export interface IntegerLeaf extends LeafBase<number> { readonly kind: 'integer'; readonly min: number; readonly max: number }
export interface BooleanLeaf extends LeafBase<boolean> { readonly kind: 'boolean' }
export interface EnumLeaf<T extends string = string> extends LeafBase<T> { readonly kind: 'enum'; readonly values: readonly T[] }
export type Leaf = StringLeaf | IntegerLeaf | BooleanLeaf | EnumLeaf;
export interface Section { readonly [key: string]: Leaf | Section }

const str = (value: string, doc: string): StringLeaf => ({ kind: 'string', default: value, doc });
const int = (value: number, doc: string, min = 0, max = Number.MAX_SAFE_INTEGER): IntegerLeaf => ({ kind: 'integer', default: value, doc, min, max });
const bool = (value: boolean, doc: string): BooleanLeaf => ({ kind: 'boolean', default: value, doc });
const oneOf = <T extends string>(value: T, values: readonly T[], doc: string): EnumLeaf<T> => ({ kind: 'enum', default: value, values, doc });

export const CONFIG_SCHEMA = {
  dataDir: str('./data', 'Folder for the embedded database, blobs and keys. Relative paths are resolved from the working directory.'),
  adminPassword: str('', 'Password of the admin user created on first start; empty generates one and logs it once. Ignored once admin exists.'),
  server: {
    addr: str('0.0.0.0:5000', 'HOST:PORT the HTTP server listens on.'),
    externalUrl: str('', 'Public base URL (e.g. https://registry.example.com) for absolute Location headers; empty means relative ones (/v2/…).'),
    maxHeaderBytes: int(16384, 'Largest request header block accepted; larger requests get 431.', 1024, 1 << 20),
    shutdownTimeoutSeconds: int(30, 'How long a graceful shutdown waits for requests in flight and running jobs.', 0, 3600),
  },
  database: {
    url: str('', 'postgres://user@host:port/db for PostgreSQL; empty means SQLite at <dataDir>/berth.db.'),
    poolSize: int(10, 'PostgreSQL connection pool size.', 1, 1000),
  },
  storage: {
    driver: oneOf('filesystem', ['filesystem'] as const, 'Blob store driver.'),
    filesystemRoot: str('', 'Folder for blobs and upload data; empty means <dataDir>/storage.'),
  },
  registry: {
    manifestMaxBytes: int(4 * 1024 * 1024, 'Largest manifest accepted on PUT, in bytes.', 1024, 64 * 1024 * 1024),
    validateReferences: bool(true, 'Refuse a manifest whose blobs or child manifests are not in the repository.'),
    tagsPageMax: int(1000, 'Most entries returned by one tags/list page; larger n is clamped.', 1, 100000),
    catalogPageMax: int(1000, 'Most entries returned by one _catalog page; larger n is clamped.', 1, 100000),
    referrersPageMax: int(1000, 'Most descriptors returned by one referrers page before a Link header.', 1, 100000),
  },
  uploads: {
    maxBlobBytes: int(0, 'Largest blob accepted, in bytes (0 means no limit).'),
    expireAfterSeconds: int(86400, 'An upload session untouched for this long is expired and its data purged.', 60),
    purgeIntervalSeconds: int(600, 'How often expired upload sessions are looked for (a scheduled job, on a cron step).', 1),
  },
  jobs: {
    concurrency: int(4, 'Background jobs this node runs at once (0: the node runs none, other nodes do).', 0, 1000),
    pollIntervalMs: int(1000, 'How often idle workers look for due jobs, in milliseconds; jobs enqueued on this node wake them at once.', 10, 3_600_000),
    leaseSeconds: int(60, 'How long a running job stays with its worker without a heartbeat; the job of a worker that died is taken over after this.', 1, 86400),
    logLinesPerJob: int(1000, 'Log lines kept per job; older lines are dropped.', 1, 1_000_000),
    schedulerTickMs: int(1000, 'How often due cron schedules are looked for, in milliseconds.', 10, 3_600_000),
    keepFinishedDays: int(14, 'Finished jobs and their logs are deleted this many days after they finished (0 keeps them).', 0, 36500),
  },
  gc: {
    runAtStart: bool(false, 'Queue a garbage collection (blobs only, default time window) each time the server starts.'),
    timeWindowHours: int(2, 'Default time window of garbage collection in hours: nothing created or linked more recently is collected. A tuning knob; 0 is safe.', 0, 876_000),
  },
  auth: {
    enabled: bool(true, 'Authenticate and authorise every request (Docker token auth on /v2, Harbor roles). false serves /v2 openly, like a bare reference registry.'),
    service: str('berth', 'Token service name: the audience of registry tokens and the service of the challenge.'),
    tokenKeyFile: str('', 'PEM file of the EC P-256 key that signs registry tokens; created when missing. Empty means <dataDir>/secret/token.key.'),
    tokenLifetimeSeconds: int(1800, 'How long a registry token is valid.', 60, 7 * 86400),
    sessionTimeoutMinutes: int(60, 'A web session ends after this long without a request.', 1, 7 * 24 * 60),
    passwordMinLength: int(8, 'Shortest password accepted for a local user.', 8, 128),
    projectCreation: oneOf('everyone', ['everyone', 'adminonly'] as const, 'Who may create projects: every logged-in user, or system admins only.'),
    robotNamePrefix: str('robot$', 'Prefix of robot account names.'),
    robotDefaultDays: int(30, 'Lifetime of a robot account created without a duration, in days (-1: never expires).', -1, 36500),
  },
  quota: {
    defaultStorageBytes: int(-1, 'Storage quota of a new project in bytes (-1: unlimited). Changing it leaves existing projects alone.', -1),
  },
  audit: {
    enabled: bool(true, 'Record every operation (pushes, pulls, deletes, API changes, logins) in the audit log.'),
    recordPulls: bool(true, "Record pulls too (the high-rate events; Harbor's pull_audit_log_disable turned around)."),
    flushIntervalMs: int(200, 'How often buffered audit entries are written, in milliseconds (one transaction per batch).', 10, 60_000),
    batchEntries: int(500, 'A write starts early when this many entries wait; the writer thread also puts at most this many in one transaction (a larger backlog is written as several).', 1, 2000),
    writerThread: bool(
      true,
      'Hash and write audit entries on a worker thread with its own database connection (at writerThreadNice), so that this work leaves the thread that serves requests; false writes them on that thread, between requests.',
    ),
    writerThreadNice: int(
      0,
      "Scheduling niceness of the audit writer thread (Linux: that thread only): 0 competes with requests as an equal; up to 19 lets requests go first, but a starved writer writes later, in colder bursts, and in the benchmark cost the requests more than at 0 (BENCHMARKS.md). Whatever it is, batches are written on the request thread while more than batchEntries × 10 entries (at most a quarter of bufferEntries) wait or the oldest has waited flushIntervalMs × 10 (at least 1 s), so a busy server writes entries late but does not drop them.",
      0,
      19,
    ),
    bufferEntries: int(100_000, 'Entries kept in memory while the database does not take them; past this, new ones are dropped and counted.', 100, 10_000_000),
    retainDays: int(0, 'Entries older than this many days are purged by a scheduled job (0 keeps them).', 0, 36500),
    maxEntries: int(0, 'Only the newest this many entries are kept by the scheduled purge (0: no limit).', 0),
    purgeCron: str('0 30 2 * * *', 'When the purge of retainDays/maxEntries runs (cron in UTC, seconds first).'),
    syslog: str('', 'Also send every entry to this syslog receiver (RFC 5424, JSON body): udp://HOST:PORT or tcp://HOST:PORT; empty sends none.'),
    syslogQueueEntries: int(10_000, 'Entries waiting for the syslog receiver at most; more are dropped and counted.', 1, 10_000_000),
  },
  webhooks: {
    enabled: bool(true, "Send webhooks (Harbor's notification_enable). false: policies can still be edited, but events trigger nothing."),
    concurrency: int(8, 'Webhook deliveries this node runs at once, on workers of their own (0: this node delivers none).', 0, 1000),
    perTargetConcurrency: int(2, 'Deliveries to one target address in flight at once on this node; more wait without using up an attempt.', 1, 1000),
    timeoutMs: int(10_000, 'How long one delivery attempt may take, in milliseconds, before it counts as failed.', 100, 300_000),
    maxAttempts: int(4, 'Attempts per delivery (the first one and the retries) before it is given up as Error.', 1, 100),
    retryBackoffMs: int(10_000, 'Wait before the first retry, in milliseconds; each further retry waits twice as long (jittered, at most an hour).', 10, 3_600_000),
    historyDays: int(30, 'Delivery history (executions, tasks, attempts) older than this many days is deleted by a daily job (0 keeps it).', 0, 36500),
    secretKeyFile: str('', 'File of the key that encrypts policy signing secrets; created (0600) when missing. Nodes sharing a database must share it. Empty means <dataDir>/secret/webhook.key.'),
  },
  log: {
    level: oneOf('info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'Log level of the JSON logs on stdout.'),
  },
  metrics: {
    enabled: bool(true, 'Serve Prometheus metrics at /metrics.'),
  },
} as const satisfies Section;

type Value<L> = L extends EnumLeaf<infer T> ? T : L extends LeafBase<infer T> ? T : L extends Section ? { readonly [K in keyof L]: Value<L[K]> } : never;

/** The resolved configuration, typed from the schema. */
export type Config = Value<typeof CONFIG_SCHEMA>;

export function isLeaf(node: Leaf | Section): node is Leaf {
  return typeof (node as Leaf).kind === 'string' && 'default' in node;
}
