import { parseDigest } from '../platform/oci/digest.ts';
import { OciError } from '../platform/oci/errors.ts';
import { MediaType } from '../platform/oci/media-types.ts';
import { assertRepositoryName } from '../platform/oci/names.ts';
import type { RegistryStore } from './store.ts';

export interface Page<T> {
  readonly items: T[];
  /** The `last` value for the next page, when there is one. */
  readonly next: string | undefined;
}

export interface ListingLimits {
  readonly tagsPageMax: number;
  readonly catalogPageMax: number;
  readonly referrersPageMax: number;
}

/** Parses the `n` query parameter: absent means the page maximum; larger values are clamped. */
export function parsePageSize(n: string | undefined, max: number): number {
  if (n === undefined || n === '') return max;
  if (!/^\d+$/.test(n)) throw new OciError('PAGINATION_NUMBER_INVALID', 'n must be a non-negative integer', { n });
  return Math.min(Number(n), max);
}

/** Fetches one extra row to learn whether another page follows. */
async function page<T>(limit: number, fetch: (take: number) => Promise<T[]>, key: (item: T) => string): Promise<Page<T>> {
  if (limit === 0) return { items: [], next: undefined };
  const rows = await fetch(limit + 1);
  const items = rows.slice(0, limit);
  return { items, next: rows.length > limit ? key(items[items.length - 1] as T) : undefined };
}

export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** Tags list, catalog and referrers: read-only listings straight from the database. */
export class ListingService {
  readonly #store: RegistryStore;
  readonly #limits: ListingLimits;

  constructor(deps: { store: RegistryStore; limits: ListingLimits }) {
    this.#store = deps.store;
    this.#limits = deps.limits;
  }

  async tags(repository: string, n: string | undefined, last: string | undefined): Promise<Page<string>> {
    assertRepositoryName(repository);
    const limit = parsePageSize(n, this.#limits.tagsPageMax);
    const repositoryId = await this.#store.findRepositoryId(repository);
    if (repositoryId === undefined) throw new OciError('NAME_UNKNOWN', 'repository name not known to registry', { name: repository });
    return page(limit, (take) => this.#store.listTags(repositoryId, last || undefined, take), (t) => t);
  }

  /**
   * Repository names in byte order. `visible`, when given, hides repositories the caller may not
   * see; the page is then filled from further rows so that n and last keep their meaning.
   */
  async catalog(n: string | undefined, last: string | undefined, visible?: (repository: string) => boolean | Promise<boolean>): Promise<Page<string>> {
    const limit = parsePageSize(n, this.#limits.catalogPageMax);
    if (!visible) return page(limit, (take) => this.#store.listRepositories(last || undefined, take), (r) => r);
    return page(
      limit,
      async (take) => {
        const kept: string[] = [];
        let cursor = last || undefined;
        for (;;) {
          const batch = await this.#store.listRepositories(cursor, Math.max(take, 100));
          for (const repository of batch) if (await visible(repository)) kept.push(repository);
          if (kept.length >= take || batch.length < Math.max(take, 100)) return kept.slice(0, take);
          cursor = batch[batch.length - 1];
        }
      },
      (r) => r,
    );
  }

  async referrers(repository: string, digestText: string, artifactType: string | undefined, n: string | undefined, last: string | undefined): Promise<Page<ReferrerDescriptor>> {
    assertRepositoryName(repository);
    const digest = parseDigest(digestText);
    const limit = parsePageSize(n, this.#limits.referrersPageMax);
    const repositoryId = await this.#store.findRepositoryId(repository);
    if (repositoryId === undefined) return { items: [], next: undefined };
    const result = await page(
      limit,
      (take) => this.#store.listReferrers(repositoryId, digest.value, artifactType || undefined, last || undefined, take),
      (r) => r.digest,
    );
    return {
      next: result.next,
      items: result.items.map((r) => ({
        mediaType: r.media_type,
        digest: r.digest,
        size: r.size,
        ...(r.artifact_type ? { artifactType: r.artifact_type } : {}),
        ...(r.annotations ? { annotations: JSON.parse(r.annotations) as Record<string, string> } : {}),
      })),
    };
  }
}

export function referrersIndex(items: ReferrerDescriptor[]): string {
  return JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: items });
}
