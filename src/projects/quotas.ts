/**
 * Storage quotas per project (Harbor's only quota resource, `storage`, in bytes; -1 unlimited).
 * Usage is kept by the quota ledger (quota-ledger.ts) inside push and delete transactions; this
 * is the read side and the hard-limit update.
 *
 * A hard limit below current usage is accepted, as in Harbor: nothing is deleted, further pushes
 * of new content are refused until usage falls below it or the limit is raised.
 */
import { badRequest, notFound } from '../platform/http/api.ts';
import type { Page, ProjectStore, QuotaRow, QuotaSortKey, Sort } from './store.ts';

export interface QuotaView {
  readonly id: number;
  readonly projectId: number;
  readonly projectName: string;
  readonly ownerName: string | null;
  readonly hard: number;
  readonly used: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface QuotaListQuery {
  /** Harbor's `reference`: only "project" exists; anything else matches nothing. */
  readonly reference?: string;
  /** Harbor's `reference_id`: the project id, as text. */
  readonly referenceId?: string;
  readonly sort: readonly Sort<QuotaSortKey>[];
  readonly page: Page;
}

/** Harbor's rule for a storage limit: -1 (unlimited) or a positive number of bytes. */
export function checkStorageLimit(value: number, field: string): void {
  if (!Number.isSafeInteger(value) || (value !== -1 && value <= 0)) throw badRequest(`${field} must be -1 (unlimited) or a positive number of bytes; got ${value}`);
}

function viewOf(row: QuotaRow): QuotaView {
  return {
    id: row.id,
    projectId: row.project_id,
    projectName: row.project_name,
    ownerName: row.owner_name,
    hard: row.hard,
    used: row.used,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class QuotaService {
  readonly #store: ProjectStore;
  readonly #now: () => number;

  constructor(store: ProjectStore, now: () => number) {
    this.#store = store;
    this.#now = now;
  }

  async list(query: QuotaListQuery): Promise<{ items: QuotaView[]; total: number }> {
    if (query.reference !== undefined && query.reference !== '' && query.reference !== 'project') return { items: [], total: 0 };
    let projectId: number | undefined;
    if (query.referenceId !== undefined && query.referenceId !== '') {
      if (!/^[0-9]{1,15}$/.test(query.referenceId)) return { items: [], total: 0 };
      projectId = Number(query.referenceId);
    }
    const { rows, total } = await this.#store.listQuotas(projectId, query.sort, query.page);
    return { items: rows.map(viewOf), total };
  }

  /** A quota by id; undefined when there is none. */
  async find(id: number): Promise<QuotaView | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    const row = await this.#store.quotaById(id);
    return row ? viewOf(row) : undefined;
  }

  async get(id: number): Promise<QuotaView> {
    const quota = await this.find(id);
    if (!quota) throw notFound(`quota ${id} not found`);
    return quota;
  }

  async ofProject(projectId: number): Promise<QuotaView | undefined> {
    const row = await this.#store.quotaOfProject(projectId);
    return row ? viewOf(row) : undefined;
  }

  /** Sets the hard storage limit (-1 or a positive number of bytes); it may be below current usage. */
  async setHard(id: number, storage: number): Promise<void> {
    checkStorageLimit(storage, 'hard.storage');
    if (!(await this.#store.updateQuotaHard(id, storage, this.#now()))) throw notFound(`quota ${id} not found`);
  }
}
