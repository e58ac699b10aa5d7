import { type Kysely, sql } from 'kysely';
import { forShareClause, isForeignKeyViolation, lockForKeyShare, lockForShare, lockForUpdate, writeTransaction } from '../platform/db/dialect.ts';
import type { Database } from '../platform/db/schema.ts';
import { OciError } from '../platform/oci/errors.ts';

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

/**
 * Notes digests that may have become unreferenced (src/gc examines them), inside the caller's
 * transaction. A digest noted again gets a higher version, so that a collector that looked at it
 * before deletes its candidate row only if nobody mentioned it since. Sorted, so that concurrent
 * writers lock candidate rows in one order.
 */
export async function addGcCandidates(trx: Kysely<Database>, digests: readonly string[], now: number): Promise<void> {
  const unique = [...new Set(digests)].sort();
  for (let i = 0; i < unique.length; i += 500) {
    await trx
      .insertInto('gc_candidates')
      .values(unique.slice(i, i + 500).map((digest) => ({ digest, version: 0, created_at: now })))
      .onConflict((oc) => oc.column('digest').doUpdateSet((eb) => ({ version: eb('gc_candidates.version', '+', 1) })))
      .execute();
  }
}

/** What makes an untagged manifest collectable; re-checked under the manifest's row lock. */
export interface UntaggedCheck {
  /** Only manifests created before this (epoch ms) are taken. */
  readonly createdBefore: number;
}

/** A compare-and-set tag move found the tag pointing elsewhere than the caller's checks saw (a concurrent push won). */
export class TagMovedError extends Error {
  constructor(tag: string) {
    super(`tag ${tag} was moved by a concurrent push`);
    this.name = 'TagMovedError';
  }
}

/**
 * The registry's queries. The database is the source of truth for repositories, links, manifests and tags.
 *
 * Garbage collection runs while clients push (src/gc). It deletes a blob in a transaction that
 * locks the blob's row, re-checks that nothing references or newly links it, and deletes the
 * row, its links and its file together. The writers here that could race with it meet it on the
 * same rows: linking a blob claims (inserts or share-locks) the blob row and publishes the file
 * inside that transaction; a manifest PUT share-locks the rows of every blob and child manifest
 * it references and checks they are still there before it commits. Whoever locks first wins; the
 * other sees a consistent state. Every write that may leave a blob unreferenced notes it in
 * gc_candidates, so that a collection examines what changed rather than everything.
 */
export class RegistryStore {
  readonly #db: Kysely<Database>;
  readonly #now: () => number;
  readonly #quota: RegistryQuota | undefined;
  #referencesRequired = false;

  constructor(db: Kysely<Database>, now: () => number = Date.now, quota?: RegistryQuota) {
    this.#db = db;
    this.#now = now;
    this.#quota = quota;
  }

  /**
   * Whether putManifest refuses (MANIFEST_BLOB_UNKNOWN) a manifest whose blobs or child manifests
   * vanished before its commit: set when the manifest service checks references
   * (registry.validateReferences), so that a garbage collection racing with the push yields a
   * clean refusal rather than a manifest with missing blobs. Off, manifests with absent
   * references are accepted as before.
   */
  requireReferencesAtCommit(required: boolean): void {
    this.#referencesRequired = required;
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

  /**
   * Records a blob and links it into the repository. Idempotent. `publish` makes the blob's bytes
   * visible (renames the upload into place); it runs inside the transaction, after the blob row
   * was claimed and the quota charged, so that garbage collection either sees this link and keeps
   * the blob, or had removed row and file before and this push brings its own file.
   */
  async linkBlob(repositoryId: number, digest: string, size: number, publish?: () => Promise<void>): Promise<void> {
    const now = this.#now();
    await writeTransaction(this.#db, async (trx) => {
      const created = await this.#claimBlob(trx, digest, size, now);
      await this.#link(trx, repositoryId, digest, now);
      await this.#quota?.charge(trx, repositoryId, [{ digest, size }]);
      // A new blob is unreferenced until a manifest names it: collectable once older than the window.
      if (created) await addGcCandidates(trx, [digest], now);
      await publish?.();
    });
  }

  /**
   * Links a blob the registry holds into the repository (a cross-repository mount), if its row
   * still exists and `present` confirms its bytes, under the row's share lock. Returns its size,
   * or undefined when there is nothing to mount (the client then uploads).
   */
  async mountBlob(repositoryId: number, digest: string, present: () => Promise<boolean>): Promise<number | undefined> {
    const now = this.#now();
    return writeTransaction(this.#db, async (trx) => {
      const row = await lockForShare(trx, trx.selectFrom('blobs').select('size').where('digest', '=', digest)).executeTakeFirst();
      if (!row || !(await present())) return undefined;
      await this.#link(trx, repositoryId, digest, now);
      await this.#quota?.charge(trx, repositoryId, [{ digest, size: row.size }]);
      return row.size;
    });
  }

  /**
   * Links the blob, or refreshes the link's time when it exists: a blob pushed (or mounted) again
   * counts as recent for garbage collection's time window, like a new one.
   */
  async #link(trx: Kysely<Database>, repositoryId: number, digest: string, now: number): Promise<void> {
    await trx
      .insertInto('repository_blobs')
      .values({ repository_id: repositoryId, digest, created_at: now })
      .onConflict((oc) => oc.columns(['repository_id', 'digest']).doUpdateSet({ created_at: now }))
      .execute();
  }

  /**
   * Inserts the blob's row, or share-locks the existing one; true when it was created. A row that
   * a collection deletes between the two statements is inserted anew.
   */
  async #claimBlob(trx: Kysely<Database>, digest: string, size: number, now: number): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const inserted = await trx
        .insertInto('blobs')
        .values({ digest, size, created_at: now })
        .onConflict((oc) => oc.column('digest').doNothing())
        .returning('digest')
        .executeTakeFirst();
      if (inserted) return true;
      const held = await lockForShare(trx, trx.selectFrom('blobs').select('digest').where('digest', '=', digest)).executeTakeFirst();
      if (held) return false;
    }
    throw new Error(`could not claim blob ${digest}: its row kept vanishing`);
  }

  async unlinkBlob(repositoryId: number, digest: string): Promise<boolean> {
    return writeTransaction(this.#db, async (trx) => {
      const result = await trx.deleteFrom('repository_blobs').where('repository_id', '=', repositoryId).where('digest', '=', digest).executeTakeFirst();
      const deleted = Number(result.numDeletedRows) > 0;
      if (deleted) await addGcCandidates(trx, [digest], this.#now());
      return deleted;
    });
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

  /**
   * Stores the manifest (once per digest) with its reference edges, and points `tag` at it. Under
   * share locks, re-checks that what it references still exists (see requireReferencesAtCommit).
   */
  async putManifest(repositoryId: number, manifest: NewManifest, tag: string | null, expectTag?: { readonly digest: string | undefined }): Promise<void> {
    // A tag may race with a collection deleting the same (untagged) manifest: the tag's foreign key
    // then fails once the manifest is gone, and a second attempt stores the manifest anew.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#putManifestOnce(repositoryId, manifest, tag, expectTag);
      } catch (err) {
        if (attempt >= 3 || !isForeignKeyViolation(err)) throw err;
      }
    }
  }

  async #putManifestOnce(repositoryId: number, manifest: NewManifest, tag: string | null, expectTag: { readonly digest: string | undefined } | undefined): Promise<void> {
    const now = this.#now();
    await writeTransaction(this.#db, async (trx) => {
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
        await this.#fenceReferences(trx, repositoryId, manifest);
        const edges = [
          ...[...new Set(manifest.blobDigests)].map((d) => ({ repository_id: repositoryId, parent_digest: manifest.digest, child_digest: d, child_kind: 'blob' as const })),
          ...[...new Set(manifest.childDigests)].map((d) => ({ repository_id: repositoryId, parent_digest: manifest.digest, child_digest: d, child_kind: 'manifest' as const })),
        ];
        for (let i = 0; i < edges.length; i += 500) {
          await trx.insertInto('manifest_references').values(edges.slice(i, i + 500)).onConflict((oc) => oc.doNothing()).execute();
        }
        if (this.#quota) await this.#quota.charge(trx, repositoryId, await this.#sizesOf(trx, repositoryId, manifest));
      }
      if (tag !== null && expectTag === undefined) {
        await trx
          .insertInto('tags')
          .values({ repository_id: repositoryId, name: tag, digest: manifest.digest, updated_at: now })
          .onConflict((oc) => oc.columns(['repository_id', 'name']).doUpdateSet({ digest: manifest.digest, updated_at: now }))
          .execute();
      } else if (tag !== null && expectTag !== undefined) {
        // Compare-and-set: the tag moves only from the digest the caller's checks saw (none: it must not exist, or already be this digest).
        const from = expectTag.digest;
        const moved =
          from === undefined
            ? await trx
                .insertInto('tags')
                .values({ repository_id: repositoryId, name: tag, digest: manifest.digest, updated_at: now })
                .onConflict((oc) => oc.columns(['repository_id', 'name']).doUpdateSet({ updated_at: now }).where('tags.digest', '=', manifest.digest))
                .executeTakeFirst()
            : await trx
                .updateTable('tags')
                .set({ digest: manifest.digest, updated_at: now })
                .where('repository_id', '=', repositoryId)
                .where('name', '=', tag)
                .where('digest', '=', from)
                .executeTakeFirst();
        const rows = 'numInsertedOrUpdatedRows' in moved ? moved.numInsertedOrUpdatedRows : moved.numUpdatedRows;
        if (Number(rows ?? 0) === 0) throw new TagMovedError(tag);
      }
      await trx.updateTable('repositories').set({ updated_at: now }).where('id', '=', repositoryId).execute();
    });
  }

  /**
   * Share-locks the rows of every blob and child manifest the manifest references, so that no
   * collection deletes them before this transaction commits (a collection that locked them first
   * has deleted them by the time these locks are granted), then checks the repository still links
   * them. Missing ones refuse the manifest when references are required.
   */
  async #fenceReferences(trx: Kysely<Database>, repositoryId: number, manifest: NewManifest): Promise<void> {
    const blobs = [...new Set(manifest.blobDigests)].sort();
    const children = [...new Set(manifest.childDigests)].sort();
    const missingBlobs: string[] = [];
    for (let i = 0; i < blobs.length; i += 500) {
      const batch = blobs.slice(i, i + 500);
      // The blob rows only are locked: a collection deletes links only under its lock on their blob
      // row, and taking a link's lock before its blob's could deadlock with it (a collection that
      // holds the blob and deletes the link). Raw: on this path of every push the query builder
      // cost more than the query (measured, ~60 µs).
      const { rows: linked } = await sql<{ digest: string }>`select rb.digest from repository_blobs rb join blobs b on b.digest = rb.digest where rb.repository_id = ${repositoryId} and rb.digest in (${sql.join(batch)})${forShareClause(trx, 'b')}`.execute(trx);
      const found = new Set(linked.map((r) => r.digest));
      missingBlobs.push(...batch.filter((d) => !found.has(d)));
    }
    const missingChildren: string[] = [];
    for (let i = 0; i < children.length; i += 500) {
      const batch = children.slice(i, i + 500);
      const rows = await lockForShare(
        trx,
        trx.selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).where('digest', 'in', batch).orderBy('digest'),
      ).execute();
      const found = new Set(rows.map((r) => r.digest));
      missingChildren.push(...batch.filter((d) => !found.has(d)));
    }
    if (!this.#referencesRequired) return;
    if (missingBlobs.length > 0) throw new OciError('MANIFEST_BLOB_UNKNOWN', 'manifest references blobs the repository does not have', { digests: missingBlobs });
    if (missingChildren.length > 0) throw new OciError('MANIFEST_BLOB_UNKNOWN', 'index references manifests the repository does not have', { digests: missingChildren });
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
    return writeTransaction(this.#db, async (trx) => {
      // The row lock first, as a collection takes it: a tag added meanwhile (under the row's share
      // lock, see addTag) is then either seen and deleted below, or finds the manifest gone.
      const row = await lockForUpdate(trx, trx.selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).where('digest', '=', digest)).executeTakeFirst();
      if (!row) return false;
      return this.#deleteManifestIn(trx, repositoryId, digest);
    });
  }

  /**
   * Deletes a manifest that garbage collection found untagged, if it still is under its row lock:
   * no tag, no index of the repository naming it, no subject still in the repository (a signature
   * or SBOM follows its artifact), and created before `check.createdBefore`. Returns whether it
   * was deleted; its blobs become candidates in the same transaction.
   */
  async deleteUntaggedManifest(repositoryId: number, digest: string, check: UntaggedCheck): Promise<boolean> {
    return writeTransaction(this.#db, async (trx) => {
      const row = await lockForUpdate(
        trx,
        trx.selectFrom('manifests').select(['created_at', 'subject_digest']).where('repository_id', '=', repositoryId).where('digest', '=', digest),
      ).executeTakeFirst();
      if (!row || row.created_at >= check.createdBefore) return false;
      const tagged = await trx.selectFrom('tags').select('name').where('repository_id', '=', repositoryId).where('digest', '=', digest).limit(1).executeTakeFirst();
      if (tagged) return false;
      const parent = await trx
        .selectFrom('manifest_references')
        .select('parent_digest')
        .where('repository_id', '=', repositoryId)
        .where('child_digest', '=', digest)
        .where('child_kind', '=', 'manifest')
        .limit(1)
        .executeTakeFirst();
      if (parent) return false;
      if (row.subject_digest !== null) {
        const subject = await trx.selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).where('digest', '=', row.subject_digest).executeTakeFirst();
        if (subject) return false;
      }
      return this.#deleteManifestIn(trx, repositoryId, digest);
    });
  }

  async #deleteManifestIn(trx: Kysely<Database>, repositoryId: number, digest: string): Promise<boolean> {
    await trx.deleteFrom('tags').where('repository_id', '=', repositoryId).where('digest', '=', digest).execute();
    const children = await trx.selectFrom('manifest_references').select('child_digest').where('repository_id', '=', repositoryId).where('parent_digest', '=', digest).execute();
    const result = await trx.deleteFrom('manifests').where('repository_id', '=', repositoryId).where('digest', '=', digest).executeTakeFirst();
    const deleted = Number(result.numDeletedRows) > 0;
    if (!deleted) return false;
    const childDigests = children.map((c) => c.child_digest);
    await this.#quota?.release(trx, repositoryId, [digest, ...childDigests]);
    await addGcCandidates(trx, childDigests, this.#now());
    return true;
  }

  /**
   * Deletes a repository with its tags, manifests and blob links, and gives its project back the
   * space nothing else in the project references. Returns false when it did not exist.
   */
  async deleteRepository(repositoryId: number): Promise<boolean> {
    return writeTransaction(this.#db, async (trx) => {
      // The repository row first, exclusively: a tag being added (which key-shares it before
      // anything else, see addTag) finishes before this reads the tags, or waits and then finds
      // the repository gone; without it, a tag committed between the two deletes below would
      // fail the manifests' delete on its foreign key.
      const held = await lockForUpdate(trx, trx.selectFrom('repositories').select('id').where('id', '=', repositoryId)).executeTakeFirst();
      if (!held) return false;
      const linked = (await trx.selectFrom('repository_blobs').select('digest').where('repository_id', '=', repositoryId).execute()).map((r) => r.digest);
      const referenced = (await trx.selectFrom('manifest_references').select('child_digest').distinct().where('repository_id', '=', repositoryId).execute()).map(
        (r) => r.child_digest,
      );
      const candidates = this.#quota
        ? [...(await trx.selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).execute()).map((r) => r.digest), ...linked]
        : [];
      await trx.deleteFrom('tags').where('repository_id', '=', repositoryId).execute();
      await trx.deleteFrom('manifests').where('repository_id', '=', repositoryId).execute();
      await trx.deleteFrom('repository_blobs').where('repository_id', '=', repositoryId).execute();
      // Released while the repository row still names the project.
      await this.#quota?.release(trx, repositoryId, candidates);
      await addGcCandidates(trx, [...linked, ...referenced], this.#now());
      await trx.deleteFrom('uploads').where('repository_id', '=', repositoryId).execute();
      const result = await trx.deleteFrom('repositories').where('id', '=', repositoryId).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  /**
   * Adds a new tag to a manifest the repository holds (the management API's tag creation): never
   * stores the manifest anew and never moves an existing tag. The manifest row is share-locked in
   * the same transaction, so a collection deleting it (untagged) either went first, and this finds
   * it gone, or waits and then sees the tag. 'gone': the manifest is not there (nothing stored);
   * 'exists': the repository already has a tag of that name (left as it is).
   */
  async addTag(repositoryId: number, digest: string, tag: string): Promise<'added' | 'exists' | 'gone'> {
    const now = this.#now();
    try {
      return await writeTransaction(this.#db, async (trx) => {
        // Parent before child, in the order a repository deletion locks them (deadlock-free).
        const repository = await lockForKeyShare(trx, trx.selectFrom('repositories').select('id').where('id', '=', repositoryId)).executeTakeFirst();
        if (!repository) return 'gone';
        const held = await lockForShare(trx, trx.selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).where('digest', '=', digest)).executeTakeFirst();
        if (!held) return 'gone';
        const inserted = await trx
          .insertInto('tags')
          .values({ repository_id: repositoryId, name: tag, digest, updated_at: now })
          .onConflict((oc) => oc.columns(['repository_id', 'name']).doNothing())
          .executeTakeFirst();
        if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) return 'exists';
        await trx.updateTable('repositories').set({ updated_at: now }).where('id', '=', repositoryId).execute();
        return 'added';
      });
    } catch (err) {
      // Safety net: the manifest (or its repository) vanished under the insert after all.
      if (isForeignKeyViolation(err)) return 'gone';
      throw err;
    }
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
