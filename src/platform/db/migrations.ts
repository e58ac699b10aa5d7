import { type Kysely, sql } from 'kysely';
import type { Migration, MigrationProvider } from 'kysely/migration';
import { dialectOf, dialectTypes } from './dialect.ts';

/**
 * The one migration list for both databases, in order. Each migration is small because SQLite
 * runs DDL outside a transaction. Never edit a migration that has shipped: add a new one.
 */
async function exec(db: Kysely<any>, statements: string[]): Promise<void> {
  for (const statement of statements) await sql.raw(statement).execute(db);
}

const m0001_registry_core: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [
      `create table repositories (
        id ${t.serialId},
        name ${t.sortableText} not null unique,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      `create table blobs (
        digest text primary key,
        size ${t.int64} not null,
        created_at ${t.int64} not null)`,
      `create table repository_blobs (
        repository_id ${t.int64} not null references repositories(id) on delete cascade,
        digest text not null references blobs(digest),
        created_at ${t.int64} not null,
        primary key (repository_id, digest))`,
      'create index repository_blobs_digest on repository_blobs (digest)',
      `create table manifests (
        repository_id ${t.int64} not null references repositories(id) on delete cascade,
        digest text not null,
        media_type text not null,
        artifact_type text,
        subject_digest text,
        annotations text,
        size ${t.int64} not null,
        content ${t.bytes} not null,
        created_at ${t.int64} not null,
        primary key (repository_id, digest))`,
      'create index manifests_subject on manifests (repository_id, subject_digest)',
      `create table manifest_references (
        repository_id ${t.int64} not null,
        parent_digest text not null,
        child_digest text not null,
        child_kind text not null,
        primary key (repository_id, parent_digest, child_digest, child_kind),
        foreign key (repository_id, parent_digest) references manifests(repository_id, digest) on delete cascade)`,
      'create index manifest_references_child on manifest_references (repository_id, child_digest)',
      `create table tags (
        repository_id ${t.int64} not null references repositories(id) on delete cascade,
        name ${t.sortableText} not null,
        digest text not null,
        updated_at ${t.int64} not null,
        primary key (repository_id, name),
        foreign key (repository_id, digest) references manifests(repository_id, digest))`,
      'create index tags_digest on tags (repository_id, digest)',
      `create table uploads (
        id text primary key,
        repository_id ${t.int64} not null references repositories(id) on delete cascade,
        "offset" ${t.int64} not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      'create index uploads_updated on uploads (updated_at)',
    ]);
  },
};

/** The job queue, its per-job logs, paused job kinds and cron schedules (src/platform/jobs). */
const m0002_jobs: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [
      `create table jobs (
        id ${t.serialId},
        kind text not null,
        payload text not null,
        status text not null,
        priority integer not null,
        dedupe_key text,
        attempts integer not null,
        max_attempts integer not null,
        run_at ${t.int64} not null,
        lease_owner text,
        lease_expires_at ${t.int64},
        last_error text,
        cancel_requested integer not null,
        created_at ${t.int64} not null,
        started_at ${t.int64},
        finished_at ${t.int64})`,
      // One unfinished job per dedupe key; finished jobs keep theirs for history.
      "create unique index jobs_dedupe_unfinished on jobs (dedupe_key) where status in ('queued', 'running')",
      'create index jobs_claim on jobs (status, priority, run_at)',
      'create index jobs_kind on jobs (kind, status)',
      'create index jobs_finished on jobs (finished_at)',
      `create table job_logs (
        seq ${t.serialId},
        job_id ${t.int64} not null references jobs(id) on delete cascade,
        at ${t.int64} not null,
        level text not null,
        message text not null)`,
      'create index job_logs_job on job_logs (job_id, seq)',
      `create table job_kind_pauses (
        kind text primary key,
        paused_at ${t.int64} not null)`,
      `create table schedules (
        name text primary key,
        cron text not null,
        job_kind text not null,
        payload text not null,
        next_run_at ${t.int64} not null,
        last_run_at ${t.int64},
        paused integer not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      'create index schedules_due on schedules (paused, next_run_at)',
    ]);
  },
};

/**
 * Users, projects and their members, robot accounts, sessions and storage quotas (src/iam,
 * src/projects). `project_blobs` is the quota ledger: each blob (and manifest) a project holds,
 * once, whatever the number of its repositories that link it.
 */
const m0003_iam_projects: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [
      `create table users (
        id ${t.serialId},
        username ${t.sortableText} not null unique,
        email text,
        realname text not null,
        comment text not null,
        password_hash text not null,
        sysadmin integer not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      'create unique index users_email on users (email) where email is not null',
      `create table projects (
        id ${t.serialId},
        name ${t.sortableText} not null unique,
        owner_id ${t.int64} references users(id) on delete set null,
        public integer not null,
        metadata text not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      `create table project_members (
        id ${t.serialId},
        project_id ${t.int64} not null references projects(id) on delete cascade,
        user_id ${t.int64} not null references users(id) on delete cascade,
        role_id integer not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null,
        unique (project_id, user_id))`,
      'create index project_members_user on project_members (user_id)',
      `create table robots (
        id ${t.serialId},
        name ${t.sortableText} not null unique,
        description text not null,
        level text not null,
        project_id ${t.int64} references projects(id) on delete cascade,
        secret_hash text not null,
        disabled integer not null,
        duration integer not null,
        expires_at ${t.int64} not null,
        permissions text not null,
        creator_type text not null,
        creator_ref text not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      'create index robots_project on robots (project_id)',
      `create table quotas (
        id ${t.serialId},
        project_id ${t.int64} not null unique references projects(id) on delete cascade,
        hard ${t.int64} not null,
        used ${t.int64} not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      `create table project_blobs (
        project_id ${t.int64} not null references projects(id) on delete cascade,
        digest text not null,
        size ${t.int64} not null,
        created_at ${t.int64} not null,
        primary key (project_id, digest))`,
      `create table sessions (
        id text primary key,
        user_id ${t.int64} not null references users(id) on delete cascade,
        csrf_token text not null,
        created_at ${t.int64} not null,
        last_seen_at ${t.int64} not null,
        expires_at ${t.int64} not null)`,
      'create index sessions_expires on sessions (expires_at)',
      'alter table repositories add column description text',
    ]);
  },
};

/**
 * Garbage collection (src/gc). `gc_candidates` lists digests that may have become unreferenced
 * (written by the registry in the transactions that unlink or unreference them); `version` grows
 * at every new mention, so a collector deletes a candidate only if nobody mentioned it again while
 * it looked. Every blob that exists now starts as a candidate: the first run examines them all.
 * `gc_runs` is the history. The indexes serve the collector's look-ups by digest across
 * repositories and projects.
 */
const m0004_gc: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [
      `create table gc_candidates (
        digest text primary key,
        version ${t.int64} not null,
        created_at ${t.int64} not null)`,
      'insert into gc_candidates (digest, version, created_at) select digest, 0, created_at from blobs',
      `create table gc_runs (
        id ${t.serialId},
        job_id ${t.int64},
        trigger text not null,
        parameters text not null,
        status text not null,
        error text,
        created_at ${t.int64} not null,
        started_at ${t.int64},
        finished_at ${t.int64},
        updated_at ${t.int64} not null,
        deleted_artifacts ${t.int64} not null,
        deleted_blobs ${t.int64} not null,
        freed_bytes ${t.int64} not null,
        examined_blobs ${t.int64} not null)`,
      'create index gc_runs_job on gc_runs (job_id)',
      // Child digest first: serves the collector's look-ups across repositories and every
      // (repository, child) look-up the old index served, at no extra cost per push.
      'drop index manifest_references_child',
      'create index manifest_references_child on manifest_references (child_digest, repository_id)',
      'create index project_blobs_digest on project_blobs (digest)',
    ]);
  },
};

/**
 * Tag retention (src/retention): one policy per project (Harbor's RetentionPolicy as JSON), its
 * executions and their per-repository tasks (with the artifacts each removed or would remove, and
 * a text log), and the last pull time of each manifest for the "most recently pulled" templates.
 */
const m0005_retention: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [
      `alter table manifests add column pulled_at ${t.int64}`,
      `create table retention_policies (
        id ${t.serialId},
        project_id ${t.int64} not null unique references projects(id) on delete cascade,
        policy text not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      `create table retention_executions (
        id ${t.serialId},
        policy_id ${t.int64} not null references retention_policies(id) on delete cascade,
        job_id ${t.int64},
        status text not null,
        trigger_kind text not null,
        dry_run integer not null,
        start_time ${t.int64} not null,
        end_time ${t.int64})`,
      'create index retention_executions_policy on retention_executions (policy_id, id)',
      `create table retention_tasks (
        id ${t.serialId},
        execution_id ${t.int64} not null references retention_executions(id) on delete cascade,
        repository text not null,
        status text not null,
        total integer not null,
        retained integer not null,
        removed text not null,
        log text not null,
        start_time ${t.int64} not null,
        end_time ${t.int64})`,
      'create index retention_tasks_execution on retention_tasks (execution_id, id)',
    ]);
  },
};

/**
 * Tag immutability rules (src/retention/immutability*): Harbor's ImmutableRule per project, its
 * selectors kept as the JSON the API takes; deleted with the project.
 */
const m0006_immutability: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [
      `create table immutable_rules (
        id ${t.serialId},
        project_id ${t.int64} not null references projects(id) on delete cascade,
        priority integer not null,
        disabled integer not null,
        tag_selectors text not null,
        scope_selectors text not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null)`,
      'create index immutable_rules_project on immutable_rules (project_id, id)',
    ]);
  },
};

/**
 * The audit log (src/audit). Entry ids are given by the writer, in chain order, under the lock on
 * the one `audit_chain` row (the chain's head and the checkpoint a purge leaves), so a missing id
 * shows a deleted entry. Each index ends in (at, id): a filter on its column, a time range and the
 * newest-first order are served together at millions of entries.
 */
const m0007_audit: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    const genesis = '0'.repeat(64);
    await exec(db, [
      `create table audit_log (
        id ${t.int64} primary key,
        at ${t.int64} not null,
        principal ${t.sortableText} not null,
        principal_kind text not null,
        operation text not null,
        resource_type text not null,
        resource ${t.sortableText} not null,
        project ${t.sortableText},
        result text not null,
        reason text,
        status integer,
        client_address text,
        user_agent text,
        request_id text,
        description text,
        hash text not null)`,
      'create index audit_log_at on audit_log (at, id)',
      'create index audit_log_principal on audit_log (principal, at, id)',
      'create index audit_log_project on audit_log (project, at, id)',
      'create index audit_log_resource on audit_log (resource, at, id)',
      'create index audit_log_operation on audit_log (operation, resource_type, at, id)',
      `create table audit_chain (
        id integer primary key,
        last_id ${t.int64} not null,
        last_hash text not null,
        checkpoint_id ${t.int64} not null,
        checkpoint_hash text not null,
        updated_at ${t.int64} not null)`,
      `insert into audit_chain (id, last_id, last_hash, checkpoint_id, checkpoint_hash, updated_at) values (1, 0, '${genesis}', 0, '${genesis}', 0)`,
    ]);
  },
};

/**
 * Webhooks (src/webhooks): per-project policies (targets and event types as JSON, the optional
 * signing secret encrypted), and the delivery history: an execution per (policy, event), a task
 * per target with the exact body it sends, and one row per delivery attempt.
 */
const m0008_webhooks: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [
      `create table webhook_policies (
        id ${t.serialId},
        project_id ${t.int64} not null references projects(id) on delete cascade,
        name ${t.sortableText} not null,
        description text not null,
        targets text not null,
        event_types text not null,
        enabled integer not null,
        secret text,
        creator text not null,
        created_at ${t.int64} not null,
        updated_at ${t.int64} not null,
        unique (project_id, name))`,
      `create table webhook_executions (
        id ${t.serialId},
        policy_id ${t.int64} not null references webhook_policies(id) on delete cascade,
        event_type text not null,
        status text not null,
        operator text not null,
        payload text not null,
        created_at ${t.int64} not null,
        ended_at ${t.int64})`,
      'create index webhook_executions_policy on webhook_executions (policy_id, id)',
      'create index webhook_executions_trigger on webhook_executions (policy_id, event_type, created_at)',
      'create index webhook_executions_created on webhook_executions (created_at)',
      `create table webhook_tasks (
        id ${t.serialId},
        execution_id ${t.int64} not null references webhook_executions(id) on delete cascade,
        policy_id ${t.int64} not null,
        address text not null,
        auth_header text not null,
        skip_cert_verify integer not null,
        payload_format text not null,
        event_type text not null,
        body text not null,
        status text not null,
        status_message text not null,
        run_count integer not null,
        job_id ${t.int64},
        created_at ${t.int64} not null,
        started_at ${t.int64},
        updated_at ${t.int64} not null,
        ended_at ${t.int64})`,
      'create index webhook_tasks_execution on webhook_tasks (execution_id, id)',
      `create table webhook_attempts (
        task_id ${t.int64} not null references webhook_tasks(id) on delete cascade,
        attempt integer not null,
        started_at ${t.int64} not null,
        latency_ms integer not null,
        status_code integer,
        error text,
        primary key (task_id, attempt))`,
    ]);
  },
};

/**
 * Generation counters of what nodes cache in memory (src/platform/cache-generations.ts): a node
 * that changes cached state bumps its counter, every node polls the counters and drops its cache
 * when one moved, so a password change on one node ends cached logins on all of them.
 */
const m0009_cache_generations: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [`create table cache_generations (name text primary key, generation ${t.int64} not null)`, "insert into cache_generations (name, generation) values ('credentials', 0)"]);
  },
};

/**
 * The worker pools of the job service's nodes (src/platform/jobs/worker.ts): each node's pool
 * announces itself at start, beats every few seconds and leaves at a graceful stop, so any node
 * can show every live pool (Harbor's GET /jobservice/pools); a pool whose beat stopped is left out.
 */
const m0010_job_worker_pools: Migration = {
  async up(db) {
    const t = dialectTypes(dialectOf(db));
    await exec(db, [
      `create table job_worker_pools (
        id text primary key,
        pid integer not null,
        host text not null,
        started_at ${t.int64} not null,
        concurrency integer not null,
        kinds text not null,
        heartbeat_at ${t.int64} not null)`,
    ]);
  },
};

export const MIGRATIONS: Record<string, Migration> = {
  '0001_registry_core': m0001_registry_core,
  '0002_jobs': m0002_jobs,
  '0003_iam_projects': m0003_iam_projects,
  '0004_gc': m0004_gc,
  '0005_retention': m0005_retention,
  '0006_immutability': m0006_immutability,
  '0007_audit': m0007_audit,
  '0008_webhooks': m0008_webhooks,
  '0009_cache_generations': m0009_cache_generations,
  '0010_job_worker_pools': m0010_job_worker_pools,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => MIGRATIONS,
};
