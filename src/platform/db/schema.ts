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

// ── tag retention (0005_retention) ──

// ── tag immutability (0006_immutability) ──

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
  // retention tables:
  // immutability tables:
}
