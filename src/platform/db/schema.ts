import type { Generated } from 'kysely';

/** Table types, as Kysely sees them. Times are epoch milliseconds; flags are 0/1. */
export interface RepositoryTable {
  id: Generated<number>;
  name: string;
  created_at: number;
  updated_at: number;
  /** Set through the management API; null until then. */
  description: string | null;
}

export interface BlobTable {
  digest: string;
  size: number;
  created_at: number;
}

/** A repository may serve a blob only when it links it (pushed or mounted into it). */
export interface RepositoryBlobTable {
  repository_id: number;
  digest: string;
  created_at: number;
}

export interface ManifestTable {
  repository_id: number;
  digest: string;
  media_type: string;
  artifact_type: string | null;
  subject_digest: string | null;
  annotations: string | null;
  size: number;
  content: Uint8Array;
  created_at: number;
}

/** Edges from a manifest to what it references: its blobs and, for an index, its child manifests. */
export interface ManifestReferenceTable {
  repository_id: number;
  parent_digest: string;
  child_digest: string;
  child_kind: 'blob' | 'manifest';
}

export interface TagTable {
  repository_id: number;
  name: string;
  digest: string;
  updated_at: number;
}

/** An upload session. The bytes received so far live in the blob store under the session id. */
export interface UploadTable {
  id: string;
  repository_id: number;
  offset: number;
  created_at: number;
  updated_at: number;
}

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** A durable job (src/platform/jobs/queue.ts). `payload` is JSON text. */
export interface JobTable {
  id: Generated<number>;
  kind: string;
  payload: string;
  status: JobStatus;
  /** Lower runs first. */
  priority: number;
  /** Unique among queued and running jobs. */
  dedupe_key: string | null;
  /** Claims so far, the current one included; also the fencing token of the current lease. */
  attempts: number;
  max_attempts: number;
  /** Not claimed before this time (a retry's backoff, or a delayed job). */
  run_at: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  last_error: string | null;
  cancel_requested: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

/** A job's log, bounded: the oldest lines are dropped past the configured count. */
export interface JobLogTable {
  seq: Generated<number>;
  job_id: number;
  at: number;
  level: string;
  message: string;
}

/** Job kinds that no worker claims until resumed (on every node). */
export interface JobKindPauseTable {
  kind: string;
  paused_at: number;
}

/** A cron schedule that enqueues a job of `job_kind` at each of its times. */
export interface ScheduleTable {
  name: string;
  cron: string;
  job_kind: string;
  payload: string;
  next_run_at: number;
  last_run_at: number | null;
  paused: number;
  created_at: number;
  updated_at: number;
}

/** A local user. `password_hash` is argon2id in PHC form. */
export interface UserTable {
  id: Generated<number>;
  username: string;
  email: string | null;
  realname: string;
  comment: string;
  password_hash: string;
  sysadmin: number;
  created_at: number;
  updated_at: number;
}

/** A project: the first path component of its repositories' names. `metadata` is JSON text (Harbor's string map). */
export interface ProjectTable {
  id: Generated<number>;
  name: string;
  owner_id: number | null;
  public: number;
  metadata: string;
  created_at: number;
  updated_at: number;
}

/** A user's role in a project (Harbor's role ids, src/iam/rbac.ts). */
export interface ProjectMemberTable {
  id: Generated<number>;
  project_id: number;
  user_id: number;
  role_id: number;
  created_at: number;
  updated_at: number;
}

/** A robot account. `permissions` is JSON text: [{kind, namespace, access: [{resource, action, effect}]}]. */
export interface RobotTable {
  id: Generated<number>;
  /** The full name clients log in with: robot$<project>+<name> or robot$<name>. */
  name: string;
  description: string;
  level: 'system' | 'project';
  project_id: number | null;
  secret_hash: string;
  disabled: number;
  /** Days it was created for; -1 means it never expires. */
  duration: number;
  /** Epoch milliseconds; -1 means never. */
  expires_at: number;
  permissions: string;
  creator_type: string;
  creator_ref: string;
  created_at: number;
  updated_at: number;
}

/** A project's storage quota in bytes; hard -1 means unlimited. `used` is the sum of its project_blobs. */
export interface QuotaTable {
  id: Generated<number>;
  project_id: number;
  hard: number;
  used: number;
  created_at: number;
  updated_at: number;
}

/** The quota ledger: every blob or manifest a project holds, counted once. */
export interface ProjectBlobTable {
  project_id: number;
  digest: string;
  size: number;
  created_at: number;
}

/** A web session. `id` is the SHA-256 of the cookie value, so a database leak yields no usable cookie. */
export interface SessionTable {
  id: string;
  user_id: number;
  csrf_token: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
}

// ── garbage collection (0004_gc) ──

/** A digest that may have become unreferenced; `version` grows each time it is mentioned again. */
export interface GcCandidateTable {
  digest: string;
  version: number;
  created_at: number;
}

/** One garbage collection run (src/gc): Harbor's GC history. `parameters` is JSON text. */
export interface GcRunTable {
  id: Generated<number>;
  /** The job that runs it; null for `berth gc` on the command line. */
  job_id: number | null;
  /** MANUAL (API), SCHEDULE (cron), CLI (berth gc) or START (gc.runAtStart). */
  trigger: string;
  parameters: string;
  /** Pending, Running, Success, Error or Stopped. */
  status: string;
  error: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  updated_at: number;
  deleted_artifacts: number;
  deleted_blobs: number;
  freed_bytes: number;
  examined_blobs: number;
}

// ── tag retention (0005_retention) ──

/** 0005 adds the last pull time to manifests (merged into the interface above): epoch ms, null if never pulled. */
export interface ManifestTable {
  pulled_at: number | null;
}

/** A project's tag retention policy: Harbor's RetentionPolicy as JSON text (src/retention/policy.ts). */
export interface RetentionPolicyTable {
  id: Generated<number>;
  project_id: number;
  policy: string;
  created_at: number;
  updated_at: number;
}

/** One run of a retention policy. Status: Pending, Running, Success, Error or Stopped (Harbor's words). */
export interface RetentionExecutionTable {
  id: Generated<number>;
  policy_id: number;
  job_id: number | null;
  status: string;
  /** Manual or Schedule. */
  trigger_kind: string;
  dry_run: number;
  start_time: number;
  end_time: number | null;
}

/** One repository of a run. `removed` is JSON: the artifacts removed (or, in a dry run, to be removed). */
export interface RetentionTaskTable {
  id: Generated<number>;
  execution_id: number;
  repository: string;
  status: string;
  total: number;
  retained: number;
  removed: string;
  log: string;
  start_time: number;
  end_time: number | null;
}

// ── tag immutability (0006_immutability) ──

/** A project's tag immutability rule (Harbor's ImmutableRule). Selectors are JSON text. */
export interface ImmutableRuleTable {
  id: Generated<number>;
  project_id: number;
  priority: number;
  disabled: number;
  /** JSON: [{kind, decoration, pattern, extras?}] */
  tag_selectors: string;
  /** JSON: {repository: [{kind, decoration, pattern}]} */
  scope_selectors: string;
  created_at: number;
  updated_at: number;
}

// ── audit log (0007_audit) ──

/** One audit entry (src/audit). `hash` = SHA-256(previous entry's hash ‖ this entry's canonical form), hex. */
export interface AuditLogTable {
  /** Given by the writer in chain order: the previous entry's id + 1. */
  id: number;
  /** When it happened, epoch ms. */
  at: number;
  /** User or robot name, "anonymous", or "system". */
  principal: string;
  principal_kind: string;
  /** create (push), pull, update, delete, login … */
  operation: string;
  resource_type: string;
  /** project/repo:tag or project/repo@digest for artifacts; the API path or name otherwise. */
  resource: string;
  project: string | null;
  result: 'success' | 'failure';
  reason: string | null;
  /** The HTTP status the client got, when there was a request. */
  status: number | null;
  client_address: string | null;
  user_agent: string | null;
  request_id: string | null;
  description: string | null;
  hash: string;
}

/** The one row (id 1) of the chain: its head, and the checkpoint purges leave (the last purged entry). */
export interface AuditChainTable {
  id: number;
  last_id: number;
  last_hash: string;
  checkpoint_id: number;
  checkpoint_hash: string;
  updated_at: number;
}

// ── webhooks (0008_webhooks) ──

/** A project's webhook policy (Harbor's WebhookPolicy). */
export interface WebhookPolicyTable {
  id: Generated<number>;
  project_id: number;
  name: string;
  description: string;
  /** JSON: [{type, address, auth_header, skip_cert_verify, payload_format}] */
  targets: string;
  /** JSON: ["PUSH_ARTIFACT", …] */
  event_types: string;
  enabled: number;
  /** The HMAC signing secret, sealed with the webhook key (src/webhooks/secrets.ts); null when none. */
  secret: string | null;
  creator: string;
  created_at: number;
  updated_at: number;
}

/** One event that triggered a policy. Status: Running, Success, Error or Stopped (Harbor's words). */
export interface WebhookExecutionTable {
  id: Generated<number>;
  policy_id: number;
  event_type: string;
  status: string;
  operator: string;
  /** The event in Harbor's Default payload shape (JSON). */
  payload: string;
  created_at: number;
  ended_at: number | null;
}

/** The delivery of one execution to one target: the exact body sent, its state and how often it was tried. */
export interface WebhookTaskTable {
  id: Generated<number>;
  execution_id: number;
  policy_id: number;
  address: string;
  auth_header: string;
  skip_cert_verify: number;
  payload_format: string;
  event_type: string;
  body: string;
  /** Pending, Running, Success, Error or Stopped. */
  status: string;
  status_message: string;
  /** Attempts started so far. */
  run_count: number;
  /** The job of the current (or last) attempt. */
  job_id: number | null;
  created_at: number;
  started_at: number | null;
  updated_at: number;
  ended_at: number | null;
}

/** One HTTP attempt of a task. */
export interface WebhookAttemptTable {
  task_id: number;
  attempt: number;
  started_at: number;
  latency_ms: number;
  /** Null when no response came (refused, timed out, TLS failure …). */
  status_code: number | null;
  /** Null on success. */
  error: string | null;
}

export interface Database {
  repositories: RepositoryTable;
  blobs: BlobTable;
  repository_blobs: RepositoryBlobTable;
  manifests: ManifestTable;
  manifest_references: ManifestReferenceTable;
  tags: TagTable;
  uploads: UploadTable;
  jobs: JobTable;
  job_logs: JobLogTable;
  job_kind_pauses: JobKindPauseTable;
  schedules: ScheduleTable;
  users: UserTable;
  projects: ProjectTable;
  project_members: ProjectMemberTable;
  robots: RobotTable;
  quotas: QuotaTable;
  project_blobs: ProjectBlobTable;
  sessions: SessionTable;
  // gc tables:
  gc_candidates: GcCandidateTable;
  gc_runs: GcRunTable;
  // retention tables:
  retention_policies: RetentionPolicyTable;
  retention_executions: RetentionExecutionTable;
  retention_tasks: RetentionTaskTable;
  // immutability tables:
  // audit tables:
  audit_log: AuditLogTable;
  audit_chain: AuditChainTable;
  // webhooks tables:
  webhook_policies: WebhookPolicyTable;
  webhook_executions: WebhookExecutionTable;
  webhook_tasks: WebhookTaskTable;
  webhook_attempts: WebhookAttemptTable;
  immutable_rules: ImmutableRuleTable;
  // in-memory caches of the nodes:
  cache_generations: CacheGenerationTable;
  job_worker_pools: JobWorkerPoolTable;
}

export interface JobWorkerPoolTable {
  id: string;
  pid: number;
  host: string;
  started_at: number;
  concurrency: number;
  /** JSON array of the job kinds the pool has handlers for. */
  kinds: string;
  heartbeat_at: number;
}

export interface CacheGenerationTable {
  name: string;
  generation: number;
}
