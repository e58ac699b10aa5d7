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

/** Garbage collection (src/gc): owned by the GC work; fill in its tables. */
const m0004_gc: Migration = {
  async up(_db) {},
};

/** Tag retention policies, executions, pull times (src/retention): owned by the retention work. */
const m0005_retention: Migration = {
  async up(_db) {},
};

/** Tag immutability rules (src/retention/immutability*): owned by the immutability work. */
const m0006_immutability: Migration = {
  async up(_db) {},
};

export const MIGRATIONS: Record<string, Migration> = {
  '0001_registry_core': m0001_registry_core,
  '0002_jobs': m0002_jobs,
  '0003_iam_projects': m0003_iam_projects,
  '0004_gc': m0004_gc,
  '0005_retention': m0005_retention,
  '0006_immutability': m0006_immutability,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => MIGRATIONS,
};
