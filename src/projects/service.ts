/**
 * Projects, their metadata, members and quotas: the use cases behind /api/v2.0/projects and
 * /api/v2.0/quotas, and the ProjectDirectory the authoriser reads. Authorisation itself is the
 * routes' job (AccessControl); what reaches these methods has been allowed, except the few rules
 * that depend on the request's content (storage_limit set by someone who may not set quotas).
 */
import type { Kysely } from 'kysely';
import type { ProjectDirectory, ProjectRef } from '../iam/access.ts';
import type { Subject } from '../iam/rbac.ts';
import type { Database } from '../platform/db/schema.ts';
import { ApiError, badRequest, conflict, notFound } from '../platform/http/api.ts';
import { isValidRepositoryName } from '../platform/oci/names.ts';
import { MemberService } from './members.ts';
import { checkSettableKey, normalizeMetadata, parseStoredMetadata, RETENTION_ID, shownMetadata } from './metadata.ts';
import { checkStorageLimit, QuotaService } from './quotas.ts';
import { type Page, type ProjectFilter, type ProjectListRow, type ProjectRow, type ProjectSortKey, ProjectStore, type Sort } from './store.ts';

export interface ProjectServiceOptions {
  readonly db: Kysely<Database>;
  /** Storage quota of a new project in bytes; -1 unlimited. */
  readonly defaultStorageBytes: number;
  readonly now?: () => number;
  /**
   * Called after a project is deleted: its robot accounts went with it, so logins cached by the
   * authenticator must be dropped.
   */
  readonly onCredentialsChanged?: () => void;
  /** Called after a project is created, changed (public flag, metadata) or deleted: caches of projects drop it. */
  readonly onProjectChanged?: () => void;
}

/** A project as the API shows it, before Harbor's JSON shape is applied. */
export interface ProjectView {
  readonly id: number;
  readonly name: string;
  readonly ownerId: number | null;
  readonly ownerName: string | null;
  readonly public: boolean;
  /** String values, `public` included. */
  readonly metadata: Record<string, string>;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly repoCount: number;
  /** The viewing user's roles in the project (empty for others and robots). */
  readonly roles: readonly number[];
}

export interface ProjectSummary {
  readonly repoCount: number;
  /** Members per role; absent when the viewer may not list members. */
  readonly members?: { readonly projectAdmin: number; readonly maintainer: number; readonly developer: number; readonly guest: number; readonly limitedGuest: number };
  /** Absent when the viewer may not read the quota. */
  readonly quota?: { readonly hard: number; readonly used: number };
}

/** Harbor's ProjectReq, as validated by the route schema. */
export interface ProjectRequest {
  readonly project_name?: string;
  readonly public?: boolean;
  readonly metadata?: Record<string, unknown>;
  readonly storage_limit?: number;
  readonly registry_id?: number | null;
  readonly cve_allowlist?: { readonly items?: readonly unknown[] };
}

export interface ProjectActor {
  /** The caller: a user or a robot (anonymous callers never get this far). */
  readonly subject: Exclude<Subject, { kind: 'anonymous' }>;
  /** Whether the caller may set storage limits (system quota:update). */
  readonly mayUpdateQuota: boolean;
}

export interface ProjectListQuery {
  readonly filter: ProjectFilter;
  readonly sort: readonly Sort<ProjectSortKey>[];
  readonly page: Page;
  /** Whose roles `current_user_role_id(s)` show. */
  readonly viewerUserId: number | undefined;
}

/** Harbor's project-name rule; names are also the first component of repository names. */
const PROJECT_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
export const PROJECT_NAME_MAX = 255;

/** A 400 explaining what is wrong with a project name, or nothing when it is valid. */
export function checkProjectName(name: string): void {
  if (name.length === 0) throw badRequest('project_name must not be empty');
  if (name.length > PROJECT_NAME_MAX) throw badRequest(`project_name is longer than ${PROJECT_NAME_MAX} characters`);
  if (name !== name.toLowerCase()) throw badRequest(`project_name "${name}" must be lowercase`);
  if (!PROJECT_NAME.test(name) || !isValidRepositoryName(name)) {
    throw badRequest(`project_name "${name}" is invalid: use lowercase letters and digits, separated by single '.', '_' or '-' (not at the start or end)`);
  }
}

function refOf(row: ProjectRow): ProjectRef {
  return { id: row.id, name: row.name, public: row.public === 1, createdAt: row.created_at };
}

function viewOf(row: ProjectListRow, roles: readonly number[]): ProjectView {
  return {
    id: row.id,
    name: row.name,
    ownerId: row.owner_id,
    ownerName: row.owner_name,
    public: row.public === 1,
    metadata: shownMetadata(row.public === 1, parseStoredMetadata(row.metadata)),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    repoCount: row.repo_count,
    roles,
  };
}

export class ProjectService implements ProjectDirectory {
  readonly #store: ProjectStore;
  readonly #defaultStorageBytes: number;
  readonly #now: () => number;
  readonly #onCredentialsChanged: () => void;
  readonly #onProjectChanged: () => void;
  readonly members: MemberService;
  readonly quotas: QuotaService;

  constructor(options: ProjectServiceOptions) {
    this.#store = new ProjectStore(options.db);
    this.#defaultStorageBytes = options.defaultStorageBytes;
    this.#now = options.now ?? Date.now;
    this.#onCredentialsChanged = options.onCredentialsChanged ?? (() => {});
    this.#onProjectChanged = options.onProjectChanged ?? (() => {});
    this.members = new MemberService(this.#store, this.#now);
    this.quotas = new QuotaService(this.#store, this.#now);
  }

  get defaultStorageBytes(): number {
    return this.#defaultStorageBytes;
  }

  // ── ProjectDirectory ────────────────────────────────────────────────────

  async find(nameOrId: string | number): Promise<ProjectRef | undefined> {
    if (typeof nameOrId === 'number') return this.findById(nameOrId);
    if (/^[0-9]+$/.test(nameOrId)) return this.findById(Number(nameOrId));
    return this.findByName(nameOrId);
  }

  async findById(id: number): Promise<ProjectRef | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    const row = await this.#store.projectById(id);
    return row ? refOf(row) : undefined;
  }

  /** By name only, even when the name is all digits (Harbor's X-Is-Resource-Name). */
  async findByName(name: string): Promise<ProjectRef | undefined> {
    if (name.length === 0 || name.length > PROJECT_NAME_MAX) return undefined;
    const row = await this.#store.projectByName(name);
    return row ? refOf(row) : undefined;
  }

  async rolesOf(userId: number, projectId: number): Promise<number[]> {
    return this.#store.rolesOf(userId, projectId);
  }

  // ── projects ────────────────────────────────────────────────────────────

  /** Creates the public project `library` (owned by admin, who is its Project Admin) when it does not exist. */
  async ensureLibrary(ownerId: number): Promise<void> {
    if (await this.#store.projectByName('library')) return;
    const owner = await this.#store.userById(ownerId);
    await this.#store.insertProject({
      name: 'library',
      ownerId: owner ? owner.id : null,
      public: true,
      metadata: {},
      hard: this.#defaultStorageBytes,
      memberUserId: owner ? owner.id : null,
      now: this.#now(),
    });
  }

  async exists(name: string): Promise<boolean> {
    return (await this.findByName(name)) !== undefined;
  }

  /**
   * Creates a project with its quota. The creating user becomes its Project Admin; a project a
   * robot creates is owned by the first system admin, as in Harbor. 409 when the name is taken.
   */
  async create(request: ProjectRequest, actor: ProjectActor): Promise<ProjectRef> {
    const name = request.project_name;
    if (name === undefined) throw badRequest('project_name is required');
    checkProjectName(name);
    if (request.registry_id !== undefined && request.registry_id !== null) throw badRequest('proxy-cache projects (registry_id) are not supported');
    checkCveAllowlist(request);
    const stored: Record<string, string> = {};
    let isPublic = request.public;
    for (const [key, value] of Object.entries(request.metadata ?? {})) {
      if (key === RETENTION_ID && value === '') continue;
      const normalized = normalizeMetadata(key, value);
      if (key === 'public') {
        const fromMetadata = normalized === 'true';
        if (isPublic !== undefined && isPublic !== fromMetadata) throw badRequest('public and metadata.public disagree');
        isPublic = fromMetadata;
      } else stored[key] = normalized;
    }
    const hard = this.#initialHard(request.storage_limit, actor.mayUpdateQuota);

    let ownerId: number | null;
    let memberUserId: number | null;
    if (actor.subject.kind === 'user') {
      ownerId = actor.subject.id;
      memberUserId = actor.subject.id;
    } else {
      const admin = await this.#store.firstSysadmin();
      if (!admin) throw new ApiError('INTERNAL_SERVER_ERROR', 'no system admin exists to own the project');
      ownerId = admin.id;
      memberUserId = null;
    }
    const id = await this.#store.insertProject({ name, ownerId, public: isPublic ?? false, metadata: stored, hard, memberUserId, now: this.#now() });
    if (id === undefined) throw conflict(`project ${name} already exists`);
    this.#onProjectChanged();
    const created = await this.findById(id);
    if (!created) throw notFound(`project ${name} was deleted while being created`);
    return created;
  }

  /** storage_limit on creation: absent or 0 means the default; only quota admins may ask for another value. */
  #initialHard(limit: number | undefined, mayUpdateQuota: boolean): number {
    if (limit === undefined || limit === 0) return this.#defaultStorageBytes;
    checkStorageLimit(limit, 'storage_limit');
    if (limit !== this.#defaultStorageBytes && !mayUpdateQuota) {
      throw new ApiError('FORBIDDEN', 'only system admins may set storage_limit; leave it out to get the default quota');
    }
    return limit;
  }

  async list(query: ProjectListQuery): Promise<{ items: ProjectView[]; total: number }> {
    const { rows, total } = await this.#store.listProjects(query.filter, query.sort, query.page);
    const roles = query.viewerUserId === undefined ? new Map<number, number[]>() : await this.#store.rolesIn(query.viewerUserId, rows.map((r) => r.id));
    return { items: rows.map((row) => viewOf(row, roles.get(row.id) ?? [])), total };
  }

  async get(project: ProjectRef, viewerUserId: number | undefined): Promise<ProjectView> {
    const row = await this.#detail(project);
    const roles = viewerUserId === undefined ? [] : await this.#store.rolesOf(viewerUserId, project.id);
    return viewOf(row, roles);
  }

  async #detail(project: ProjectRef): Promise<ProjectListRow> {
    const row = await this.#store.projectDetail(project.id);
    if (!row) throw notFound(`project ${project.name} not found`);
    return row;
  }

  /**
   * PUT /projects/{p}: the public flag and metadata keys given are set, the others kept. The name
   * cannot change; storage_limit is applied like PUT /quotas/{id} (quota admins only).
   */
  async update(project: ProjectRef, request: ProjectRequest, actor: ProjectActor): Promise<void> {
    const row = await this.#detail(project);
    if (request.project_name !== undefined && request.project_name !== row.name) throw badRequest('a project cannot be renamed');
    if (request.registry_id !== undefined && request.registry_id !== null) throw badRequest('proxy-cache projects (registry_id) are not supported');
    checkCveAllowlist(request);
    let isPublic = request.public;
    const changes: Record<string, string> = {};
    let retentionSent: { readonly value: unknown } | undefined;
    for (const [key, value] of Object.entries(request.metadata ?? {})) {
      if (key === RETENTION_ID) {
        retentionSent = { value };
        continue;
      }
      const normalized = normalizeMetadata(key, value);
      if (key === 'public') {
        const fromMetadata = normalized === 'true';
        if (isPublic !== undefined && isPublic !== fromMetadata) throw badRequest('public and metadata.public disagree');
        isPublic = fromMetadata;
      } else changes[key] = normalized;
    }
    if (request.storage_limit !== undefined) {
      const quota = await this.#store.quotaOfProject(project.id);
      if (quota?.hard !== request.storage_limit) {
        if (!actor.mayUpdateQuota) throw new ApiError('FORBIDDEN', 'only system admins may change storage_limit');
        checkStorageLimit(request.storage_limit, 'storage_limit');
        await this.#store.setProjectHard(project.id, request.storage_limit, this.#now());
      }
    }
    // The keys given are merged into what is stored at the moment of writing, not when read above.
    const found = await this.#store.changeProject(project.id, this.#now(), (current) => {
      // Harbor accepts the project's own retention_id back unchanged (clients send the whole project).
      if (retentionSent !== undefined && retentionSent.value !== (current.metadata[RETENTION_ID] ?? '')) {
        throw badRequest('metadata.retention_id cannot be changed here: omit it, or send the value the project has');
      }
      return { public: isPublic ?? current.public, metadata: { ...current.metadata, ...changes } };
    });
    if (!found) throw notFound(`project ${project.name} not found`);
    this.#onProjectChanged();
  }

  /** Whether the project may be deleted: not while it holds repositories (Harbor's _deletable). */
  async deletable(project: ProjectRef): Promise<{ deletable: boolean; message: string }> {
    const count = await this.#store.repositoryCount(project.name);
    return count > 0 ? { deletable: false, message: `the project contains ${count} ${count === 1 ? 'repository' : 'repositories'}, can not be deleted` } : { deletable: true, message: '' };
  }

  /** Deletes the project with its members, robot accounts and quota; 412 while it holds repositories. */
  async delete(project: ProjectRef): Promise<void> {
    const result = await this.#store.deleteProjectIfEmpty(project.id, project.name);
    if (result === 'gone') throw notFound(`project ${project.name} not found`);
    if (result === 'held') throw new ApiError('PRECONDITION', (await this.deletable(project)).message || `project ${project.name} contains repositories, can not be deleted`);
    this.#onCredentialsChanged();
    this.#onProjectChanged();
  }

  async summary(project: ProjectRef, include: { members: boolean; quota: boolean }): Promise<ProjectSummary> {
    const repoCount = await this.#store.repositoryCount(project.name);
    let members: ProjectSummary['members'];
    if (include.members) {
      const counts = await this.#store.memberCounts(project.id);
      members = {
        projectAdmin: counts.get(1) ?? 0,
        developer: counts.get(2) ?? 0,
        guest: counts.get(3) ?? 0,
        maintainer: counts.get(4) ?? 0,
        limitedGuest: counts.get(5) ?? 0,
      };
    }
    let quota: ProjectSummary['quota'];
    if (include.quota) {
      const row = await this.#store.quotaOfProject(project.id);
      if (row) quota = { hard: row.hard, used: row.used };
    }
    return { repoCount, ...(members ? { members } : {}), ...(quota ? { quota } : {}) };
  }

  // ── metadata ────────────────────────────────────────────────────────────

  async metadata(project: ProjectRef): Promise<Record<string, string>> {
    const row = await this.#detail(project);
    return shownMetadata(row.public === 1, parseStoredMetadata(row.metadata));
  }

  /** POST /metadatas/: adds settings; a key the project already has is a 409 (use PUT). */
  async addMetadata(project: ProjectRef, entries: Record<string, unknown>): Promise<void> {
    const keys = Object.keys(entries);
    if (keys.length === 0) throw badRequest('give at least one metadata key and value');
    const normalized: Record<string, string> = {};
    for (const key of keys) normalized[key] = normalizeMetadata(key, entries[key]);
    await this.#writeMetadata(project, normalized, (shown) => {
      for (const key of keys) {
        if (shown[key] !== undefined) throw conflict(`metadata ${key} is already set; update it with PUT /projects/${project.name}/metadatas/${key}`);
      }
    });
  }

  /** PUT /metadatas/{key}: the body must be {key: value} for that one key. */
  async updateMetadata(project: ProjectRef, key: string, entries: Record<string, unknown>): Promise<void> {
    const keys = Object.keys(entries);
    if (keys.length !== 1 || keys[0] !== key) throw badRequest(`the body must be {"${key}": "<value>"}`);
    const value = normalizeMetadata(key, entries[key]);
    await this.#writeMetadata(project, { [key]: value }, (shown) => {
      if (shown[key] === undefined) throw notFound(`metadata ${key} is not set for project ${project.name}; add it with POST`);
    });
  }

  async deleteMetadata(project: ProjectRef, key: string): Promise<void> {
    if (key === 'public') throw badRequest('metadata public cannot be removed; set it to "false" instead');
    checkSettableKey(key);
    await this.setSystemMetadata(project, key, undefined);
  }

  /**
   * Sets (or, with undefined, removes) a setting other capabilities own, such as `retention_id`
   * for tag retention; no validation of the key.
   */
  async setSystemMetadata(project: ProjectRef, key: string, value: string | undefined): Promise<void> {
    const found = await this.#store.changeProject(project.id, this.#now(), (current) => {
      if (value === undefined && current.metadata[key] === undefined) return undefined;
      const metadata = { ...current.metadata };
      if (value === undefined) delete metadata[key];
      else metadata[key] = value;
      return { public: current.public, metadata };
    });
    if (!found) throw notFound(`project ${project.name} not found`);
    this.#onProjectChanged();
  }

  /** Merges `values` (public goes to the flag) into what is stored, after `check` saw the metadata as shown, in one locked read-modify-write. */
  async #writeMetadata(project: ProjectRef, values: Record<string, string>, check: (shown: Record<string, string>) => void): Promise<void> {
    const found = await this.#store.changeProject(project.id, this.#now(), (current) => {
      check(shownMetadata(current.public, current.metadata));
      let isPublic = current.public;
      const metadata = { ...current.metadata };
      for (const [key, value] of Object.entries(values)) {
        if (key === 'public') isPublic = value === 'true';
        else metadata[key] = value;
      }
      return { public: isPublic, metadata };
    });
    if (!found) throw notFound(`project ${project.name} not found`);
    this.#onProjectChanged();
  }
}

/** Per-project CVE allowlists belong to vulnerability scanning, not built yet: an empty one is accepted (tools send it). */
function checkCveAllowlist(request: ProjectRequest): void {
  if ((request.cve_allowlist?.items?.length ?? 0) > 0) throw badRequest('per-project CVE allowlists are not supported yet; send an empty items list or leave cve_allowlist out');
}
