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

export const MIGRATIONS: Record<string, Migration> = {
  '0001_registry_core': m0001_registry_core,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => MIGRATIONS,
};
