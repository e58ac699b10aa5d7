/**
 * Storage quota accounting, inside the registry's own transactions.
 *
 * `project_blobs` lists every blob and manifest a project holds, once, however many of its
 * repositories link it; `quotas.used` is the sum of their sizes. A push charges what is new to the
 * project in the same transaction that links it, with a conditional update (`used + n <= hard`),
 * so parallel pushes racing to the limit cannot pass it: on PostgreSQL the quota row is locked by
 * the first update and the condition is re-checked by the next; SQLite has one writer at a time.
 * Deleting a manifest releases what no remaining manifest of the project references.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../platform/db/schema.ts';
import { type EventBus, SYSTEM_ACTOR } from '../platform/events/bus.ts';
import { OciError } from '../platform/oci/errors.ts';
import type { RegistryQuota } from '../registry/store.ts';

/** Share of the limit past which a push raises a quota warning (Harbor's 85%). */
export const QUOTA_WARNING_RATIO = 0.85;

interface ProjectQuota {
  readonly projectId: number;
  readonly projectName: string;
}

function projectNameOf(repository: string): string | undefined {
  const slash = repository.indexOf('/');
  return slash < 0 ? undefined : repository.slice(0, slash);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(2)} ${units[unit]}`;
}

export class QuotaLedger implements RegistryQuota {
  /** Repository id → its project. A repository never changes project, and ids are never reused. */
  readonly #projectOf = new Map<number, ProjectQuota | null>();
  readonly #now: () => number;
  readonly #events: EventBus | undefined;

  constructor(options: { now?: () => number; events?: EventBus } = {}) {
    this.#now = options.now ?? Date.now;
    this.#events = options.events;
  }

  async #project(db: Kysely<Database>, repositoryId: number): Promise<ProjectQuota | undefined> {
    const known = this.#projectOf.get(repositoryId);
    if (known !== undefined) return known ?? undefined;
    const repository = await db.selectFrom('repositories').select('name').where('id', '=', repositoryId).executeTakeFirst();
    const projectName = repository ? projectNameOf(repository.name) : undefined;
    const project = projectName === undefined ? undefined : await db.selectFrom('projects').select(['id', 'name']).where('name', '=', projectName).executeTakeFirst();
    const result = project ? { projectId: project.id, projectName: project.name } : undefined;
    // Only a found project is remembered: a missing one may be created later.
    if (result) this.#projectOf.set(repositoryId, result);
    return result;
  }

  async #refusal(db: Kysely<Database>, project: ProjectQuota, needed: number): Promise<OciError> {
    const quota = await db.selectFrom('quotas').select(['hard', 'used']).where('project_id', '=', project.projectId).executeTakeFirst();
    const hard = quota?.hard ?? 0;
    const used = quota?.used ?? 0;
    return new OciError(
      'DENIED',
      `quota exceeded: project ${project.projectName} has a storage quota of ${formatBytes(hard)} with ${formatBytes(used)} used; this push needs ${formatBytes(needed)} more`,
      { project: project.projectName, hard, used, needed },
    );
  }

  /** Refuses early, before any bytes are published, when `items` would not fit. Not a guarantee: charge() is. */
  async precheck(db: Kysely<Database>, repositoryId: number, items: readonly { digest: string; size: number }[]): Promise<void> {
    const project = await this.#project(db, repositoryId);
    if (!project || items.length === 0) return;
    const quota = await db.selectFrom('quotas').select(['hard', 'used']).where('project_id', '=', project.projectId).executeTakeFirst();
    if (!quota || quota.hard < 0) return;
    const held = await db
      .selectFrom('project_blobs')
      .select('digest')
      .where('project_id', '=', project.projectId)
      .where(
        'digest',
        'in',
        items.map((i) => i.digest),
      )
      .execute();
    const heldSet = new Set(held.map((h) => h.digest));
    const needed = sumNew(items, heldSet);
    if (needed > 0 && quota.used + needed > quota.hard) throw await this.#refusal(db, project, needed);
  }

  async charge(trx: Kysely<Database>, repositoryId: number, items: readonly { digest: string; size: number }[]): Promise<void> {
    const project = await this.#project(trx, repositoryId);
    if (!project || items.length === 0) return;
    const now = this.#now();
    const unique = [...new Map(items.map((i) => [i.digest, i])).values()];
    let added = 0;
    for (let i = 0; i < unique.length; i += 500) {
      const inserted = await trx
        .insertInto('project_blobs')
        .values(unique.slice(i, i + 500).map((item) => ({ project_id: project.projectId, digest: item.digest, size: item.size, created_at: now })))
        .onConflict((oc) => oc.columns(['project_id', 'digest']).doNothing())
        .returning(['size'])
        .execute();
      for (const row of inserted) added += row.size;
    }
    if (added === 0) return;
    const updated = await trx
      .updateTable('quotas')
      .set((eb) => ({ used: eb('used', '+', added), updated_at: now }))
      .where('project_id', '=', project.projectId)
      .where((eb) => eb.or([eb('hard', '<', 0), eb(eb('used', '+', added), '<=', eb.ref('hard'))]))
      .returning(['used', 'hard'])
      .executeTakeFirst();
    if (updated) {
      this.#warnIfCrossed(project, updated.used - added, updated.used, updated.hard);
      return;
    }
    const hasQuota = await trx.selectFrom('quotas').select('id').where('project_id', '=', project.projectId).executeTakeFirst();
    if (!hasQuota) return;
    throw await this.#refusal(trx, project, added);
  }

  /** Harbor's QUOTA_WARNING: usage crossed 85% of the limit with this push. */
  #warnIfCrossed(project: ProjectQuota, before: number, after: number, hard: number): void {
    if (!this.#events || hard <= 0) return;
    const threshold = hard * QUOTA_WARNING_RATIO;
    if (before >= threshold || after < threshold) return;
    this.#events.emit({
      type: 'quota.warning',
      at: this.#now(),
      actor: SYSTEM_ACTOR,
      project: project.projectName,
      used: after,
      hard,
      message: `project ${project.projectName} uses ${formatBytes(after)} of its ${formatBytes(hard)} storage quota`,
    });
  }

  async release(trx: Kysely<Database>, repositoryId: number, candidates: readonly string[]): Promise<void> {
    const project = await this.#project(trx, repositoryId);
    if (!project || candidates.length === 0) return;
    // Repositories of the project: names from "p/" up to (not including) "p0", '0' following '/' in byte order.
    const low = `${project.projectName}/`;
    const high = `${project.projectName}0`;
    const stillHeld = new Set<string>();
    const unique = [...new Set(candidates)];
    for (let i = 0; i < unique.length; i += 500) {
      const batch = unique.slice(i, i + 500);
      const asManifest = await trx
        .selectFrom('manifests as m')
        .innerJoin('repositories as r', 'r.id', 'm.repository_id')
        .select('m.digest as digest')
        .where('r.name', '>=', low)
        .where('r.name', '<', high)
        .where('m.digest', 'in', batch)
        .execute();
      const asChild = await trx
        .selectFrom('manifest_references as mr')
        .innerJoin('repositories as r', 'r.id', 'mr.repository_id')
        .select('mr.child_digest as digest')
        .where('r.name', '>=', low)
        .where('r.name', '<', high)
        .where('mr.child_digest', 'in', batch)
        .execute();
      for (const row of [...asManifest, ...asChild]) stillHeld.add(row.digest);
    }
    const released = unique.filter((d) => !stillHeld.has(d));
    let freed = 0;
    for (let i = 0; i < released.length; i += 500) {
      const rows = await trx
        .deleteFrom('project_blobs')
        .where('project_id', '=', project.projectId)
        .where('digest', 'in', released.slice(i, i + 500))
        .returning(['size'])
        .execute();
      for (const row of rows) freed += row.size;
    }
    if (freed > 0) {
      await trx
        .updateTable('quotas')
        .set((eb) => ({ used: eb('used', '-', freed), updated_at: this.#now() }))
        .where('project_id', '=', project.projectId)
        .execute();
    }
  }
}

function sumNew(items: readonly { digest: string; size: number }[], held: ReadonlySet<string>): number {
  const seen = new Set<string>();
  let total = 0;
  for (const item of items) {
    if (held.has(item.digest) || seen.has(item.digest)) continue;
    seen.add(item.digest);
    total += item.size;
  }
  return total;
}
