/**
 * Read queries (and the two repository-row writes) behind Harbor's repository, artifact, tag and
 * search API. Writes that touch manifests, tags or blobs go through RegistryStore, never here, so
 * that quota accounting stays in one place.
 *
 * A repository belongs to the project named by its first path component; repositories store no
 * project id, so queries join projects by name range: `p.name + '/' <= r.name < p.name + '0'`
 * ('0' is the byte after '/'), which the unique index on repositories.name serves on both databases.
 */
import { type Expression, type ExpressionBuilder, type Kysely, type SqlBool, sql } from 'kysely';
import type { Database } from '../platform/db/schema.ts';

/** Harbor-style text match on one column: exact, or `=~` (contains). */
export interface TextMatch {
  readonly kind: 'exact' | 'fuzzy';
  readonly value: string;
}

export interface SortKey<K extends string> {
  readonly key: K;
  readonly desc: boolean;
}

export interface ProjectRow {
  readonly id: number;
  readonly name: string;
  readonly public: number;
  readonly owner_id: number | null;
  readonly metadata: string;
  readonly created_at: number;
  readonly updated_at: number;
}

export interface RepositoryRow {
  readonly id: number;
  readonly name: string;
  readonly description: string | null;
  readonly created_at: number;
  readonly updated_at: number;
  readonly project_id: number;
  readonly project_name: string;
  readonly project_public: number;
  readonly artifact_count: number;
}

export interface ManifestRow {
  readonly repository_id: number;
  readonly digest: string;
  readonly media_type: string;
  readonly artifact_type: string | null;
  readonly subject_digest: string | null;
  readonly annotations: string | null;
  readonly size: number;
  readonly content: Uint8Array;
  readonly created_at: number;
  /** Last pull (manifest GET), recorded in batches by tag retention's pull recorder; null when never pulled. */
  readonly pulled_at: number | null;
}

export interface TagRow {
  readonly repository_id: number;
  readonly name: string;
  readonly digest: string;
  readonly updated_at: number;
}

export interface RepositoryFilter {
  /** Only repositories of these projects; undefined means every project. */
  readonly projectIds?: readonly number[];
  readonly name?: TextMatch;
}

export type RepositorySortKey = 'name' | 'creation_time' | 'update_time' | 'pull_count' | 'artifact_count';

/**
 * Which artifacts a listing shows. `listed` is Harbor's default: tagged artifacts and those no
 * index references, without accessories (manifests with a subject); `all` is `q=base=*`.
 */
export interface ArtifactFilter {
  readonly scope: 'listed' | 'all';
  /** `*` tagged only, `nil` untagged only, else a tag name (exact or contained). */
  readonly tags?: TextMatch;
  readonly digest?: string;
  readonly mediaType?: TextMatch;
  readonly artifactType?: TextMatch;
}

export type ArtifactSortKey = 'push_time' | 'pull_time' | 'digest' | 'media_type';
export type TagSortKey = 'name' | 'push_time' | 'pull_time';

const MANIFEST_COLUMNS = ['m.repository_id', 'm.digest', 'm.media_type', 'm.artifact_type', 'm.subject_digest', 'm.annotations', 'm.size', 'm.content', 'm.created_at', 'm.pulled_at'] as const;

/** `value` for a LIKE pattern that matches it literally anywhere in the text. */
function containsPattern(value: string): string {
  return `%${value.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function textMatch(column: Expression<string | null>, match: TextMatch): Expression<SqlBool> {
  return match.kind === 'exact' ? sql<SqlBool>`${column} = ${match.value}` : sql<SqlBool>`${column} like ${containsPattern(match.value)} escape '\\'`;
}

type RepoEb = ExpressionBuilder<Database & { r: Database['repositories']; p: Database['projects'] }, 'r' | 'p'>;
type ManifestEb = ExpressionBuilder<Database & { m: Database['manifests'] }, 'm'>;

const tagged = (eb: ManifestEb) =>
  eb.exists(eb.selectFrom('tags as t').select(sql.lit(1).as('one')).whereRef('t.repository_id', '=', 'm.repository_id').whereRef('t.digest', '=', 'm.digest'));

const referencedByIndex = (eb: ManifestEb) =>
  eb.exists(
    eb
      .selectFrom('manifest_references as mr')
      .select(sql.lit(1).as('one'))
      .whereRef('mr.repository_id', '=', 'm.repository_id')
      .whereRef('mr.child_digest', '=', 'm.digest')
      .where('mr.child_kind', '=', 'manifest'),
  );

/** Harbor's default artifact listing: tagged or not an index child, and not an accessory. */
const listedArtifact = (eb: ManifestEb) => eb.and([eb('m.subject_digest', 'is', null), eb.or([tagged(eb), eb.not(referencedByIndex(eb))])]);

export class RegistryApiStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  // ── projects ─────────────────────────────────────────────────────────────

  async projectIdByName(name: string): Promise<number | undefined> {
    const row = await this.#db.selectFrom('projects').select('id').where('name', '=', name).executeTakeFirst();
    return row?.id;
  }

  /**
   * Projects a caller might see, before the authoriser decides: public ones, those `userId` is a
   * member of, those named in `names`; every project when `all`. `name` narrows by project name.
   */
  async projectCandidates(who: { all?: boolean; userId?: number; names?: readonly string[] }, name?: TextMatch): Promise<ProjectRow[]> {
    let query = this.#db.selectFrom('projects as p').select(['p.id', 'p.name', 'p.public', 'p.owner_id', 'p.metadata', 'p.created_at', 'p.updated_at']);
    if (!who.all) {
      query = query.where((eb) => {
        const ors = [eb('p.public', '=', 1)];
        if (who.userId !== undefined) {
          ors.push(eb('p.id', 'in', eb.selectFrom('project_members as pm').select('pm.project_id').where('pm.user_id', '=', who.userId)));
        }
        if (who.names && who.names.length > 0) ors.push(eb('p.name', 'in', [...who.names]));
        return eb.or(ors);
      });
    }
    if (name) query = query.where((eb) => textMatch(eb.ref('p.name'), name));
    return query.orderBy('p.name').execute();
  }

  /** Number of repositories in each project of `projectIds`. */
  async repositoryCounts(projectIds: readonly number[]): Promise<Map<number, number>> {
    const counts = new Map<number, number>();
    if (projectIds.length === 0) return counts;
    const rows = await this.#db
      .selectFrom('repositories as r')
      .innerJoin('projects as p', (join) => join.on((eb) => inProject(eb as unknown as RepoEb)))
      .select(['p.id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('p.id', 'in', [...projectIds])
      .groupBy('p.id')
      .execute();
    for (const row of rows) counts.set(row.id, Number(row.n));
    return counts;
  }

  // ── repositories ─────────────────────────────────────────────────────────

  #repositories(filter: RepositoryFilter) {
    let query = this.#db.selectFrom('repositories as r').innerJoin('projects as p', (join) => join.on((eb) => inProject(eb as unknown as RepoEb)));
    if (filter.projectIds !== undefined) {
      const ids = [...filter.projectIds];
      query = ids.length === 0 ? query.where(sql<SqlBool>`1 = 0`) : query.where('p.id', 'in', ids);
    }
    const name = filter.name;
    if (name) query = query.where((eb) => textMatch(eb.ref('r.name'), name));
    return query;
  }

  async countRepositories(filter: RepositoryFilter): Promise<number> {
    const row = await this.#repositories(filter)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async listRepositories(filter: RepositoryFilter, sort: readonly SortKey<RepositorySortKey>[], offset: number, limit: number): Promise<RepositoryRow[]> {
    let query = this.#repositories(filter).select(repositoryColumns);
    for (const s of sort) {
      const column = { name: 'r.name', creation_time: 'r.created_at', update_time: 'r.updated_at', artifact_count: 'artifact_count', pull_count: undefined }[s.key];
      if (column !== undefined) query = query.orderBy(sql.ref(column), s.desc ? 'desc' : 'asc');
    }
    const rows = await query.orderBy('r.id', 'desc').offset(offset).limit(limit).execute();
    return rows.map(toRepositoryRow);
  }

  async findRepository(name: string): Promise<RepositoryRow | undefined> {
    const row = await this.#repositories({}).select(repositoryColumns).where('r.name', '=', name).executeTakeFirst();
    return row ? toRepositoryRow(row) : undefined;
  }

  async updateRepositoryDescription(id: number, description: string, now: number): Promise<boolean> {
    const result = await this.#db.updateTable('repositories').set({ description, updated_at: now }).where('id', '=', id).executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }


  // ── artifacts ────────────────────────────────────────────────────────────

  #artifacts(repositoryId: number, filter: ArtifactFilter) {
    let query = this.#db.selectFrom('manifests as m').where('m.repository_id', '=', repositoryId);
    if (filter.scope === 'listed') query = query.where((eb) => listedArtifact(eb as unknown as ManifestEb));
    const tags = filter.tags;
    if (tags) {
      if (tags.kind === 'exact' && tags.value === '*') query = query.where((eb) => tagged(eb as unknown as ManifestEb));
      else if (tags.kind === 'exact' && tags.value === 'nil') query = query.where((eb) => eb.not(tagged(eb as unknown as ManifestEb)));
      else {
        query = query.where((eb) =>
          eb.exists(
            eb
              .selectFrom('tags as t')
              .select(sql.lit(1).as('one'))
              .whereRef('t.repository_id', '=', 'm.repository_id')
              .whereRef('t.digest', '=', 'm.digest')
              .where((inner) => textMatch(inner.ref('t.name'), tags)),
          ),
        );
      }
    }
    if (filter.digest !== undefined) query = query.where('m.digest', '=', filter.digest);
    const mediaType = filter.mediaType;
    if (mediaType) query = query.where((eb) => textMatch(eb.ref('m.media_type'), mediaType));
    const artifactType = filter.artifactType;
    if (artifactType) query = query.where((eb) => textMatch(eb.ref('m.artifact_type'), artifactType));
    return query;
  }

  async countArtifacts(repositoryId: number, filter: ArtifactFilter): Promise<number> {
    const row = await this.#artifacts(repositoryId, filter)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async listArtifacts(repositoryId: number, filter: ArtifactFilter, sort: readonly SortKey<ArtifactSortKey>[], offset: number, limit: number): Promise<ManifestRow[]> {
    let query = this.#artifacts(repositoryId, filter).select(MANIFEST_COLUMNS);
    for (const s of sort) {
      const column = { push_time: 'm.created_at', digest: 'm.digest', media_type: 'm.media_type', pull_time: 'm.pulled_at' }[s.key];
      if (column !== undefined) query = query.orderBy(sql.ref(column), s.desc ? 'desc' : 'asc');
    }
    return query.orderBy('m.digest').offset(offset).limit(limit).execute();
  }

  async findArtifact(repositoryId: number, digest: string): Promise<ManifestRow | undefined> {
    return this.#db.selectFrom('manifests as m').select(MANIFEST_COLUMNS).where('m.repository_id', '=', repositoryId).where('m.digest', '=', digest).executeTakeFirst();
  }

  /** Manifests of the repository among `digests` (index children, accessories). */
  async artifactsByDigest(repositoryId: number, digests: readonly string[]): Promise<ManifestRow[]> {
    if (digests.length === 0) return [];
    return this.#db
      .selectFrom('manifests as m')
      .select(MANIFEST_COLUMNS)
      .where('m.repository_id', '=', repositoryId)
      .where('m.digest', 'in', [...new Set(digests)])
      .execute();
  }

  /** Sum of the sizes of the blobs each manifest of `digests` references (config and layers). */
  async blobBytes(repositoryId: number, digests: readonly string[]): Promise<Map<string, number>> {
    const sums = new Map<string, number>();
    if (digests.length === 0) return sums;
    const rows = await this.#db
      .selectFrom('manifest_references as mr')
      .innerJoin('blobs as b', 'b.digest', 'mr.child_digest')
      .select(['mr.parent_digest', (eb) => eb.fn.sum<number>('b.size').as('total')])
      .where('mr.repository_id', '=', repositoryId)
      .where('mr.child_kind', '=', 'blob')
      .where('mr.parent_digest', 'in', [...new Set(digests)])
      .groupBy('mr.parent_digest')
      .execute();
    for (const row of rows) sums.set(row.parent_digest, Number(row.total));
    return sums;
  }

  /** Child manifest digests of each index among `digests`. */
  async childDigests(repositoryId: number, digests: readonly string[]): Promise<Map<string, string[]>> {
    const children = new Map<string, string[]>();
    if (digests.length === 0) return children;
    const rows = await this.#db
      .selectFrom('manifest_references')
      .select(['parent_digest', 'child_digest'])
      .where('repository_id', '=', repositoryId)
      .where('child_kind', '=', 'manifest')
      .where('parent_digest', 'in', [...new Set(digests)])
      .execute();
    for (const row of rows) children.set(row.parent_digest, [...(children.get(row.parent_digest) ?? []), row.child_digest]);
    return children;
  }

  /** Digests of the manifests (indexes) that reference `digest` as a child. */
  async parentDigests(repositoryId: number, digest: string): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('manifest_references')
      .select('parent_digest')
      .where('repository_id', '=', repositoryId)
      .where('child_kind', '=', 'manifest')
      .where('child_digest', '=', digest)
      .execute();
    return rows.map((r) => r.parent_digest);
  }

  /** Manifests whose subject is one of `digests` (signatures, SBOMs, attestations …). */
  async accessoriesOf(repositoryId: number, digests: readonly string[]): Promise<ManifestRow[]> {
    if (digests.length === 0) return [];
    return this.#db
      .selectFrom('manifests as m')
      .select(MANIFEST_COLUMNS)
      .where('m.repository_id', '=', repositoryId)
      .where('m.subject_digest', 'in', [...new Set(digests)])
      .orderBy('m.created_at')
      .orderBy('m.digest')
      .execute();
  }

  // ── tags ─────────────────────────────────────────────────────────────────

  async tagsOf(repositoryId: number, digests: readonly string[]): Promise<TagRow[]> {
    if (digests.length === 0) return [];
    return this.#db
      .selectFrom('tags')
      .select(['repository_id', 'name', 'digest', 'updated_at'])
      .where('repository_id', '=', repositoryId)
      .where('digest', 'in', [...new Set(digests)])
      .orderBy('updated_at', 'desc')
      .orderBy('name')
      .execute();
  }

  async findTag(repositoryId: number, name: string): Promise<TagRow | undefined> {
    return this.#db.selectFrom('tags').select(['repository_id', 'name', 'digest', 'updated_at']).where('repository_id', '=', repositoryId).where('name', '=', name).executeTakeFirst();
  }

  #tags(repositoryId: number, digest: string, name: TextMatch | undefined) {
    let query = this.#db.selectFrom('tags as t').where('t.repository_id', '=', repositoryId).where('t.digest', '=', digest);
    if (name) query = query.where((eb) => textMatch(eb.ref('t.name'), name));
    return query;
  }

  async countTags(repositoryId: number, digest: string, name: TextMatch | undefined): Promise<number> {
    const row = await this.#tags(repositoryId, digest, name)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async listTags(repositoryId: number, digest: string, name: TextMatch | undefined, sort: readonly SortKey<TagSortKey>[], offset: number, limit: number): Promise<TagRow[]> {
    let query = this.#tags(repositoryId, digest, name).select(['t.repository_id', 't.name', 't.digest', 't.updated_at']);
    for (const s of sort) {
      const column = { name: 't.name', push_time: 't.updated_at', pull_time: undefined }[s.key];
      if (column !== undefined) query = query.orderBy(sql.ref(column), s.desc ? 'desc' : 'asc');
    }
    return query.orderBy('t.name').offset(offset).limit(limit).execute();
  }
}

/** The join condition "repository r is in project p". */
function inProject(eb: RepoEb): Expression<SqlBool> {
  return eb.and([sql<SqlBool>`${eb.ref('r.name')} >= ${eb.ref('p.name')} || '/'`, sql<SqlBool>`${eb.ref('r.name')} < ${eb.ref('p.name')} || '0'`]);
}

function repositoryColumns(eb: RepoEb) {
  return [
    'r.id',
    'r.name',
    'r.description',
    'r.created_at',
    'r.updated_at',
    'p.id as project_id',
    'p.name as project_name',
    'p.public as project_public',
    eb
      .selectFrom('manifests as m')
      .select((inner) => inner.fn.countAll<number>().as('n'))
      .whereRef('m.repository_id', '=', 'r.id')
      .where((inner) => listedArtifact(inner as unknown as ManifestEb))
      .as('artifact_count'),
  ] as const;
}

function toRepositoryRow(row: {
  id: number;
  name: string;
  description: string | null;
  created_at: number;
  updated_at: number;
  project_id: number;
  project_name: string;
  project_public: number;
  artifact_count: number | null;
}): RepositoryRow {
  return { ...row, artifact_count: Number(row.artifact_count ?? 0) };
}
