import { type Kysely, sql } from 'kysely';
import type { Database } from '../platform/db/schema.ts';

export interface StoredManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  readonly content: Uint8Array;
  readonly subjectDigest: string | null;
}

export interface NewManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly artifactType: string | null;
  readonly subjectDigest: string | null;
  readonly annotations: Record<string, string> | null;
  readonly content: Uint8Array;
  readonly blobDigests: readonly string[];
  readonly childDigests: readonly string[];
}

export interface ReferrerRow {
  readonly digest: string;
  readonly media_type: string;
  readonly artifact_type: string | null;
  readonly annotations: string | null;
  readonly size: number;
}

export interface UploadRow {
  readonly id: string;
  readonly repository_id: number;
  readonly repository: string;
  readonly offset: number;
}

/**
 * Storage quota accounting the registry runs inside its own transactions (src/projects/quota-ledger.ts).
 * Absent when auth is off: there are no projects then.
 */
export interface RegistryQuota {
  /** Refuses early, before bytes are published, when the items would not fit. */
  precheck(db: Kysely<Database>, repositoryId: number, items: readonly { digest: string; size: number }[]): Promise<void>;
  /** Charges what is new to the repository's project; throws OciError DENIED past the limit (the transaction then rolls back). */
  charge(trx: Kysely<Database>, repositoryId: number, items: readonly { digest: string; size: number }[]): Promise<void>;
  /** Releases candidates the project no longer references. */
  release(trx: Kysely<Database>, repositoryId: number, candidates: readonly string[]): Promise<void>;
}

/** The registry's queries. The database is the source of truth for repositories, links, manifests and tags. */
export class RegistryStore {
  readonly #db: Kysely<Database>;
  readonly #now: () => number;
  readonly #quota: RegistryQuota | undefined;

  constructor(db: Kysely<Database>, now: () => number = Date.now, quota?: RegistryQuota) {
    this.#db = db;
    this.#now = now;
    this.#quota = quota;
  }

  /** Throws OciError DENIED when storing these in the repository would pass its project's quota. */
  async precheckQuota(repositoryId: number, items: readonly { digest: string; size: number }[]): Promise<void> {
    await this.#quota?.precheck(this.#db, repositoryId, items);
  }

  async findRepositoryId(name: string): Promise<number | undefined> {
    const row = await this.#db.selectFrom('repositories').select('id').where('name', '=', name).executeTakeFirst();
    return row?.id;
  }

  /** Returns the repository's id, creating the repository on first use. */
  async ensureRepository(name: string): Promise<number> {
    const existing = await this.findRepositoryId(name);
    if (existing !== undefined) return existing;
    const now = this.#now();
    await this.#db
      .insertInto('repositories')
      .values({ name, created_at: now, updated_at: now })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const id = await this.findRepositoryId(name);
    if (id === undefined) throw new Error(`repository ${name} vanished while being created`);
    return id;
  }

  /** Size of a blob the repository links, or undefined when it does not link it. */
  async linkedBlobSize(repositoryId: number, digest: string): Promise<number | undefined> {
    const row = await this.#db
      .selectFrom('repository_blobs as rb')
      .innerJoin('blobs as b', 'b.digest', 'rb.digest')
      .select('b.size')
      .where('rb.repository_id', '=', repositoryId)
      .where('rb.digest', '=', digest)
      .executeTakeFirst();
    return row?.size;
  }

  /** Size of a blob linked in the repository named `repository` (one query: the HEAD/GET hot path). */
  async linkedBlobSizeByName(repository: string, digest: string): Promise<number | undefined> {
    const row = await this.#db
      .selectFrom('repositories as r')
      .innerJoin('repository_blobs as rb', 'rb.repository_id', 'r.id')
      .innerJoin('blobs as b', 'b.digest', 'rb.digest')
      .select('b.size')
      .where('r.name', '=', repository)
      .where('rb.digest', '=', digest)
      .executeTakeFirst();
    return row?.size;
  }

  async blobSize(digest: string): Promise<number | undefined> {
    const row = await this.#db.selectFrom('blobs').select('size').where('digest', '=', digest).executeTakeFirst();
    return row?.size;
  }

  /** Records a committed blob and links it into the repository. Idempotent. */
  async linkBlob(repositoryId: number, digest: string, size: number): Promise<void> {
    const now = this.#now();
    await this.#db.transaction().execute(async (trx) => {
      await trx.insertInto('blobs').values({ digest, size, created_at: now }).onConflict((oc) => oc.column('digest').doNothing()).execute();
      await trx
        .insertInto('repository_blobs')
        .values({ repository_id: repositoryId, digest, created_at: now })
        .onConflict((oc) => oc.columns(['repository_id', 'digest']).doNothing())
        .execute();
      await this.#quota?.charge(trx, repositoryId, [{ digest, size }]);
    });
  }

  async unlinkBlob(repositoryId: number, digest: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('repository_blobs').where('repository_id', '=', repositoryId).where('digest', '=', digest).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  // ── uploads ──────────────────────────────────────────────────────────────

  async createUpload(id: string, repositoryId: number): Promise<void> {
    const now = this.#now();
    await this.#db.insertInto('uploads').values({ id, repository_id: repositoryId, offset: 0, created_at: now, updated_at: now }).execute();
  }

  async findUpload(id: string): Promise<UploadRow | undefined> {
    return this.#db
      .selectFrom('uploads as u')
      .innerJoin('repositories as r', 'r.id', 'u.repository_id')
      .select(['u.id', 'u.repository_id', 'r.name as repository', 'u.offset'])
      .where('u.id', '=', id)
      .executeTakeFirst();
  }

  /** Moves an upload's offset forward only if nobody else moved it first (another node, a retry). */
  async advanceUpload(id: string, from: number, to: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('uploads')
      .set({ offset: to, updated_at: this.#now() })
      .where('id', '=', id)
      .where('offset', '=', from)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async deleteUpload(id: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('uploads').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async uploadsIdleSince(before: number, limit: number): Promise<string[]> {
    const rows = await this.#db.selectFrom('uploads').select('id').where('updated_at', '<', before).limit(limit).execute();
    return rows.map((r) => r.id);
  }

  async uploadExists(id: string): Promise<boolean> {
    return (await this.#db.selectFrom('uploads').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
  }

  // ── manifests and tags ───────────────────────────────────────────────────

  /** Digests from `digests` that the repository does not link as blobs. */
  missingBlobs(repositoryId: number, digests: readonly string[]): Promise<string[]> {
    return this.#missingIn('repository_blobs', repositoryId, digests);
  }

  /** Digests from `digests` that are not manifests of the repository. */
  missingManifests(repositoryId: number, digests: readonly string[]): Promise<string[]> {
    return this.#missingIn('manifests', repositoryId, digests);
  }

  async #missingIn(table: 'repository_blobs' | 'manifests', repositoryId: number, digests: readonly string[]): Promise<string[]> {
    if (digests.length === 0) return [];
    const unique = [...new Set(digests)];
    const rows = await this.#db.selectFrom(table).select('digest').where('repository_id', '=', repositoryId).where('digest', 'in', unique).execute();
    const found = new Set(rows.map((r) => r.digest));
    return unique.filter((d) => !found.has(d));
  }

  /** Stores the manifest (once per digest) with its reference edges, and points `tag` at it. */
  async putManifest(repositoryId: number, manifest: NewManifest, tag: string | null): Promise<void> {
    const now = this.#now();
    await this.#db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('manifests')
        .values({
          repository_id: repositoryId,
          digest: manifest.digest,
          media_type: manifest.mediaType,
          artifact_type: manifest.artifactType,
          subject_digest: manifest.subjectDigest,
          annotations: manifest.annotations ? JSON.stringify(manifest.annotations) : null,
          size: manifest.content.byteLength,
          content: manifest.content,
          created_at: now,
        })
        .onConflict((oc) => oc.columns(['repository_id', 'digest']).doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) > 0) {
        const edges = [
          ...[...new Set(manifest.blobDigests)].map((d) => ({ repository_id: repositoryId, parent_digest: manifest.digest, child_digest: d, child_kind: 'blob' as const })),
          ...[...new Set(manifest.childDigests)].map((d) => ({ repository_id: repositoryId, parent_digest: manifest.digest, child_digest: d, child_kind: 'manifest' as const })),
        ];
        for (let i = 0; i < edges.length; i += 500) {
          await trx.insertInto('manifest_references').values(edges.slice(i, i + 500)).onConflict((oc) => oc.doNothing()).execute();
        }
        if (this.#quota) await this.#quota.charge(trx, repositoryId, await this.#sizesOf(trx, repositoryId, manifest));
      }
      if (tag !== null) {
        await trx
          .insertInto('tags')
          .values({ repository_id: repositoryId, name: tag, digest: manifest.digest, updated_at: now })
          .onConflict((oc) => oc.columns(['repository_id', 'name']).doUpdateSet({ digest: manifest.digest, updated_at: now }))
          .execute();
      }
      await trx.updateTable('repositories').set({ updated_at: now }).where('id', '=', repositoryId).execute();
    });
  }

  /** The manifest and everything it references, with sizes: what a manifest PUT charges to the quota. */
  async #sizesOf(trx: Kysely<Database>, repositoryId: number, manifest: NewManifest): Promise<Array<{ digest: string; size: number }>> {
    const items = [{ digest: manifest.digest, size: manifest.content.byteLength }];
    const blobs = [...new Set(manifest.blobDigests)];
    const children = [...new Set(manifest.childDigests)];
    for (let i = 0; i < blobs.length; i += 500) {
      items.push(...(await trx.selectFrom('blobs').select(['digest', 'size']).where('digest', 'in', blobs.slice(i, i + 500)).execute()));
    }
    for (let i = 0; i < children.length; i += 500) {
      items.push(
        ...(await trx
          .selectFrom('manifests')
          .select(['digest', 'size'])
          .where('repository_id', '=', repositoryId)
          .where('digest', 'in', children.slice(i, i + 500))
          .execute()),
      );
    }
    return items;
  }

  async resolveTag(repositoryId: number, tag: string): Promise<string | undefined> {
    const row = await this.#db.selectFrom('tags').select('digest').where('repository_id', '=', repositoryId).where('name', '=', tag).executeTakeFirst();
    return row?.digest;
  }

  /**
   * A manifest by repository name and tag or digest, in one query (the pull hot path).
   * `repositoryExists` tells a missing manifest from a missing repository.
   */
  async findManifest(repository: string, reference: { tag: string } | { digest: string }): Promise<{ repositoryExists: boolean; manifest: StoredManifest | undefined }> {
    const row = await this.#db
      .selectFrom('repositories as r')
      .leftJoin('manifests as m', (join) =>
        'tag' in reference
          ? join.onRef('m.repository_id', '=', 'r.id').on('m.digest', '=', (eb) =>
              eb.selectFrom('tags as t').select('t.digest').whereRef('t.repository_id', '=', 'r.id').where('t.name', '=', reference.tag),
            )
          : join.onRef('m.repository_id', '=', 'r.id').on('m.digest', '=', reference.digest),
      )
      .select(['m.digest', 'm.media_type', 'm.size', 'm.content', 'm.subject_digest'])
      .where('r.name', '=', repository)
      .executeTakeFirst();
    if (!row) return { repositoryExists: false, manifest: undefined };
    if (row.digest === null || row.content === null) return { repositoryExists: true, manifest: undefined };
    return {
      repositoryExists: true,
      manifest: { digest: row.digest, mediaType: row.media_type as string, size: row.size as number, content: row.content, subjectDigest: row.subject_digest },
    };
  }

  async getManifest(repositoryId: number, digest: string): Promise<StoredManifest | undefined> {
    const row = await this.#db
      .selectFrom('manifests')
      .select(['digest', 'media_type', 'size', 'content', 'subject_digest'])
      .where('repository_id', '=', repositoryId)
      .where('digest', '=', digest)
      .executeTakeFirst();
    if (!row) return undefined;
    return { digest: row.digest, mediaType: row.media_type, size: row.size, content: row.content, subjectDigest: row.subject_digest };
  }

  /** Deletes a manifest and every tag pointing at it. */
  async deleteManifest(repositoryId: number, digest: string): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const children = this.#quota
        ? await trx.selectFrom('manifest_references').select('child_digest').where('repository_id', '=', repositoryId).where('parent_digest', '=', digest).execute()
        : [];
      await trx.deleteFrom('tags').where('repository_id', '=', repositoryId).where('digest', '=', digest).execute();
      const result = await trx.deleteFrom('manifests').where('repository_id', '=', repositoryId).where('digest', '=', digest).executeTakeFirst();
      const deleted = Number(result.numDeletedRows) > 0;
      if (deleted) await this.#quota?.release(trx, repositoryId, [digest, ...children.map((c) => c.child_digest)]);
      return deleted;
    });
  }

  /**
   * Deletes a repository with its tags, manifests and blob links, and gives its project back the
   * space nothing else in the project references. Returns false when it did not exist.
   */
  async deleteRepository(repositoryId: number): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const candidates = this.#quota
        ? [
            ...(await trx.selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).execute()).map((r) => r.digest),
            ...(await trx.selectFrom('repository_blobs').select('digest').where('repository_id', '=', repositoryId).execute()).map((r) => r.digest),
          ]
        : [];
      await trx.deleteFrom('tags').where('repository_id', '=', repositoryId).execute();
      await trx.deleteFrom('manifests').where('repository_id', '=', repositoryId).execute();
      await trx.deleteFrom('repository_blobs').where('repository_id', '=', repositoryId).execute();
      // Released while the repository row still names the project.
      await this.#quota?.release(trx, repositoryId, candidates);
      await trx.deleteFrom('uploads').where('repository_id', '=', repositoryId).execute();
      const result = await trx.deleteFrom('repositories').where('id', '=', repositoryId).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async deleteTag(repositoryId: number, tag: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('tags').where('repository_id', '=', repositoryId).where('name', '=', tag).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  /** Tags in byte order, after `last`, at most `limit`. */
  async listTags(repositoryId: number, last: string | undefined, limit: number): Promise<string[]> {
    let query = this.#db.selectFrom('tags').select('name').where('repository_id', '=', repositoryId);
    if (last !== undefined) query = query.where('name', '>', last);
    const rows = await query.orderBy('name').limit(limit).execute();
    return rows.map((r) => r.name);
  }

  /** Repositories holding at least one manifest, in byte order, after `last`, at most `limit`. */
  async listRepositories(last: string | undefined, limit: number): Promise<string[]> {
    let query = this.#db
      .selectFrom('repositories as r')
      .select('r.name')
      .where((eb) => eb.exists(eb.selectFrom('manifests as m').select(sql.lit(1).as('one')).whereRef('m.repository_id', '=', 'r.id')));
    if (last !== undefined) query = query.where('r.name', '>', last);
    const rows = await query.orderBy('r.name').limit(limit).execute();
    return rows.map((r) => r.name);
  }

  /** Manifests in the repository whose subject is `digest`, ordered by digest, after `last`. */
  async listReferrers(repositoryId: number, digest: string, artifactType: string | undefined, last: string | undefined, limit: number): Promise<ReferrerRow[]> {
    let query = this.#db
      .selectFrom('manifests')
      .select(['digest', 'media_type', 'artifact_type', 'annotations', 'size'])
      .where('repository_id', '=', repositoryId)
      .where('subject_digest', '=', digest);
    if (artifactType !== undefined) query = query.where('artifact_type', '=', artifactType);
    if (last !== undefined) query = query.where('digest', '>', last);
    return query.orderBy('digest').limit(limit).execute();
  }
}
