/**
 * Robot accounts: project robots (`<prefix><project>+<name>`) and system robots (`<prefix><name>`),
 * as Harbor has them. A robot logs in with HTTP Basic `name:secret`; only an argon2id hash of the
 * secret is stored, and the secret itself is shown once, when it is created or refreshed.
 *
 * Permissions are Harbor's: sets of `{kind, namespace, access: [{resource, action, effect}]}`. A
 * project robot holds exactly one set, for its own project; a system robot holds any number:
 * system permissions (namespace "/"), permissions in named projects, and permissions in every
 * project ("*", including projects created later). Only `allow` effects exist here.
 *
 * A robot is never given more than whoever creates or updates it holds: every (namespace,
 * resource, action) asked for is checked against the caller through the one authorization
 * function. A named project is bound by id as well as by name, so a robot granted access to a
 * project that is deleted does not inherit a new project of the same name.
 *
 * Who may manage robots (the `robot` resource of the project or the system) is asked through a
 * RobotGuard, which the routes build from the request (see robot-routes.ts).
 */
import { type Kysely, sql } from 'kysely';
import { badRequest, conflict, forbidden, notFound } from '../platform/http/api.ts';
import type { Database, RobotTable } from '../platform/db/schema.ts';
import { AccessControl, type ProjectDirectory, type ProjectRef } from './access.ts';
import type { RobotDirectory, RobotSubject } from './authenticate.ts';
import { checkRobotSecret, generateSecret, hashPassword, verifyAgainstNothing, verifyPassword } from './passwords.ts';
import { type Action, projectPermissions, type RobotAccess, type Subject, SYSTEM_RESOURCES, type SystemResource } from './rbac.ts';

export interface RobotServiceOptions {
  readonly db: Kysely<Database>;
  readonly projects: ProjectDirectory;
  /** Name prefix, `robot$` by default. */
  readonly prefix: string;
  /** Lifetime of a robot created without `duration`, in days; -1 never expires. */
  readonly defaultDays: number;
  readonly onCredentialsChanged?: () => void;
  readonly now?: () => number;
  /** The authoriser used for "no more than the caller holds"; built over `projects` when absent. */
  readonly access?: AccessControl;
}

export type RobotLevel = 'system' | 'project';

/** One access of a permission set; `effect` is always "allow". */
export interface RobotAccessEntry {
  readonly resource: string;
  readonly action: string;
  readonly effect: 'allow';
}

/** A permission set as the API shows it: namespace is a project name, "*" or "/". */
export interface RobotPermission {
  readonly kind: RobotLevel;
  readonly namespace: string;
  readonly access: readonly RobotAccessEntry[];
}

export interface Robot {
  readonly id: number;
  /** The full name it logs in with. */
  readonly name: string;
  readonly description: string;
  readonly level: RobotLevel;
  /** The project of a project robot; null for system robots. */
  readonly projectId: number | null;
  readonly disabled: boolean;
  /** Days it was created for; -1 never expires. */
  readonly duration: number;
  /** Epoch milliseconds; -1 never. */
  readonly expiresAt: number;
  /** Its permission sets; sets of projects deleted since are left out. */
  readonly permissions: readonly RobotPermission[];
  /** 'local' (a user created it) or 'robot'. */
  readonly creatorType: string;
  /** The creator's id. */
  readonly creatorRef: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** A permission set as a client sends it (Harbor's RobotPermission). */
export interface RobotPermissionInput {
  readonly kind: string;
  readonly namespace: string;
  readonly access: ReadonlyArray<{ readonly resource: string; readonly action: string; readonly effect?: string }>;
}

/** Harbor's RobotCreate. */
export interface RobotCreateInput {
  readonly name: string;
  readonly description?: string;
  readonly level: string;
  readonly disable?: boolean;
  /** Days; -1 never expires; absent: the configured default. */
  readonly duration?: number;
  /** A secret of the caller's choosing (Harbor's IsValidSec); generated when absent. */
  readonly secret?: string;
  readonly permissions: readonly RobotPermissionInput[];
}

/** The editable part of Harbor's Robot (PUT). Absent fields keep their value. */
export interface RobotUpdateInput {
  /** When given, must be the robot's name (a robot cannot be renamed). */
  readonly name?: string;
  /** When given, must be the robot's level. */
  readonly level?: string;
  readonly description?: string;
  readonly disable?: boolean;
  readonly duration?: number;
  readonly permissions?: readonly RobotPermissionInput[];
}

export interface CreatedRobot {
  readonly robot: Robot;
  /** The secret in plain text: shown this once. */
  readonly secret: string;
}

export interface RobotListQuery {
  readonly level: RobotLevel;
  /** Required for project level. */
  readonly projectId?: number;
  /** Exact name (with or without the prefix) or a substring. */
  readonly name?: { readonly match: 'exact' | 'fuzzy'; readonly value: string };
  readonly offset: number;
  readonly limit: number;
  /** Column and direction; id ascending by default. */
  readonly sort?: { readonly field: RobotSortField; readonly descending: boolean };
}

export const ROBOT_SORT_FIELDS = ['id', 'name', 'creation_time', 'update_time', 'expires_at', 'duration'] as const;
export type RobotSortField = (typeof ROBOT_SORT_FIELDS)[number];

/**
 * Who may manage robots, asked by the service before it acts; built from the request by the
 * routes (AccessControl.requireProject / requireSystem on the `robot` resource). Each method
 * throws the 401/403/404 ApiError the API answers with.
 */
export interface RobotGuard {
  readonly subject: Subject;
  requireLogin(): void;
  requireProject(nameOrId: string | number, action: Action): Promise<ProjectRef>;
  requireSystem(action: Action): void;
}

/** Harbor's robot name rule (handler/robot.go validateName); `+` is what separates project and name. */
const NAME_PATTERN = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
export const ROBOT_NAME_MAX = 255;
export const ROBOT_DESCRIPTION_MAX = 1024;
/** Longest lifetime in days (100 years), which keeps expiry times well inside safe integers. */
export const ROBOT_MAX_DAYS = 36_500;
const DAY_MS = 86_400_000;

/**
 * What a system robot may be granted, by system resource (Harbor's system policies, less the
 * configuration, which since Harbor 2.12 no robot may be given).
 */
export const SYSTEM_ROBOT_PERMISSIONS = {
  'audit-log': ['list'],
  project: ['list', 'create'],
  user: ['create', 'read', 'update', 'delete', 'list'],
  'user-group': ['create', 'read', 'update', 'delete', 'list'],
  robot: ['create', 'read', 'update', 'delete', 'list'],
  quota: ['read', 'list', 'update'],
  catalog: ['read'],
  'garbage-collection': ['create', 'read', 'update', 'list', 'stop'],
  'purge-audit': ['create', 'read', 'update', 'list', 'stop'],
  'jobservice-monitor': ['list', 'stop'],
  'replication-policy': ['create', 'read', 'update', 'delete', 'list'],
  replication: ['create', 'read', 'list'],
  registry: ['create', 'read', 'update', 'delete', 'list'],
  scanner: ['create', 'read', 'update', 'delete', 'list'],
  'scan-all': ['create', 'read', 'update', 'stop'],
  label: ['create', 'read', 'update', 'delete', 'list'],
  'security-hub': ['read', 'list'],
} as const satisfies Partial<Record<SystemResource, readonly Action[]>>;

export interface PermissionCatalog {
  readonly system: ReadonlyArray<{ resource: string; action: string }>;
  readonly project: ReadonlyArray<{ resource: string; action: string }>;
}

/** Every (resource, action) a robot may be given, by kind (GET /api/v2.0/permissions). */
export function permissionCatalog(): PermissionCatalog {
  const system = (Object.entries(SYSTEM_ROBOT_PERMISSIONS) as Array<[string, readonly string[]]>).flatMap(([resource, actions]) =>
    actions.map((action) => ({ resource, action })),
  );
  return { system, project: projectPermissions() };
}

const PROJECT_PAIRS = new Set(projectPermissions().map((p) => `${p.resource}:${p.action}`));
const SYSTEM_PAIRS = new Set(permissionCatalog().system.map((p) => `${p.resource}:${p.action}`));
// Every grantable system resource must be one the authoriser knows.
for (const resource of Object.keys(SYSTEM_ROBOT_PERMISSIONS)) {
  if (!(SYSTEM_RESOURCES as readonly string[]).includes(resource)) throw new Error(`unknown system resource ${resource}`);
}

/** A permission set as stored: Harbor's shape, plus the id of a named project. */
interface StoredPermission {
  kind: RobotLevel;
  namespace: string;
  project_id?: number;
  access: RobotAccessEntry[];
}

/** A permission set whose namespace has been resolved. */
interface ResolvedPermission {
  readonly kind: RobotLevel;
  /** "/" (system), "*" (every project) or a project name. */
  readonly namespace: string;
  /** The named project; undefined for "/" and "*". */
  readonly project?: ProjectRef;
  readonly access: RobotAccessEntry[];
}

type RobotRow = Pick<RobotTable, 'name' | 'description' | 'level' | 'project_id' | 'secret_hash' | 'disabled' | 'duration' | 'expires_at' | 'permissions' | 'creator_type' | 'creator_ref' | 'created_at' | 'updated_at'> & { id: number };

const ROW_COLUMNS = [
  'id',
  'name',
  'description',
  'level',
  'project_id',
  'secret_hash',
  'disabled',
  'duration',
  'expires_at',
  'permissions',
  'creator_type',
  'creator_ref',
  'created_at',
  'updated_at',
] as const;

const SORT_COLUMNS: Record<RobotSortField, 'id' | 'name' | 'created_at' | 'updated_at' | 'expires_at' | 'duration'> = {
  id: 'id',
  name: 'name',
  creation_time: 'created_at',
  update_time: 'updated_at',
  expires_at: 'expires_at',
  duration: 'duration',
};

export class RobotService implements RobotDirectory {
  readonly #db: Kysely<Database>;
  readonly #projects: ProjectDirectory;
  readonly #access: AccessControl;
  readonly #prefix: string;
  readonly #defaultDays: number;
  readonly #onCredentialsChanged: () => void;
  readonly #now: () => number;

  constructor(options: RobotServiceOptions) {
    if (options.prefix === '') throw new RangeError('robot name prefix must not be empty');
    if (!Number.isInteger(options.defaultDays) || options.defaultDays === 0 || options.defaultDays < -1 || options.defaultDays > ROBOT_MAX_DAYS) {
      throw new RangeError(`robot default lifetime must be -1 or 1 to ${ROBOT_MAX_DAYS} days, got ${options.defaultDays}`);
    }
    this.#db = options.db;
    this.#projects = options.projects;
    this.#access = options.access ?? new AccessControl(options.projects);
    this.#prefix = options.prefix;
    this.#defaultDays = options.defaultDays;
    this.#onCredentialsChanged = options.onCredentialsChanged ?? (() => {});
    this.#now = options.now ?? Date.now;
  }

  get prefix(): string {
    return this.#prefix;
  }

  // ── RobotDirectory ──────────────────────────────────────────────────────

  isRobotName(name: string): boolean {
    return name.startsWith(this.#prefix);
  }

  async checkSecret(name: string, secret: string): Promise<RobotSubject | undefined> {
    const row = this.isRobotName(name) ? await this.#rowByName(name) : undefined;
    if (!row) {
      await verifyAgainstNothing(secret);
      return undefined;
    }
    if (!(await verifyPassword(row.secret_hash, secret))) return undefined;
    return this.#usable(row) ? this.#subjectOf(row) : undefined;
  }

  async subjectByName(name: string): Promise<RobotSubject | undefined> {
    const row = this.isRobotName(name) ? await this.#rowByName(name) : undefined;
    return row && this.#usable(row) ? this.#subjectOf(row) : undefined;
  }

  // ── use cases ───────────────────────────────────────────────────────────

  /** Creates a robot; the secret comes back this once. 400 bad input, 401/403/404 from the guard, 403 escalation, 409 taken. */
  async create(guard: RobotGuard, input: RobotCreateInput): Promise<CreatedRobot> {
    guard.requireLogin();
    const level = parseLevel(input.level);
    const name = checkName(input.name);
    const description = checkDescription(input.description ?? '');
    const duration = input.duration === undefined ? this.#defaultDays : checkDuration(input.duration);
    if (input.secret !== undefined) checkSecretText(input.secret);
    const requested = checkPermissionShapes(level, input.permissions);

    let project: ProjectRef | undefined;
    if (level === 'project') {
      project = await guard.requireProject(requested[0]?.namespace ?? '', 'create');
    } else {
      guard.requireSystem('create');
    }
    const permissions = await this.#resolve(level, requested, project);
    await this.#assertGrantable(guard.subject, permissions);

    const fullName = level === 'project' && project ? `${this.#prefix}${project.name}+${name}` : `${this.#prefix}${name}`;
    if (await this.#rowByName(fullName)) throw conflict(`a robot named ${fullName} already exists`);

    const secret = input.secret ?? generateSecret();
    const secretHash = await hashPassword(secret);
    const now = this.#now();
    const creator = creatorOf(guard.subject);
    let id: number;
    try {
      const inserted = await this.#db
        .insertInto('robots')
        .values({
          name: fullName,
          description,
          level,
          project_id: project?.id ?? null,
          secret_hash: secretHash,
          disabled: input.disable ? 1 : 0,
          duration,
          expires_at: duration === -1 ? -1 : now + duration * DAY_MS,
          permissions: JSON.stringify(permissions.map(toStored)),
          creator_type: creator.type,
          creator_ref: creator.ref,
          created_at: now,
          updated_at: now,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      id = Number(inserted.id);
    } catch (err) {
      // Two creations of the same name at once: the unique index decides.
      if (await this.#rowByName(fullName)) throw conflict(`a robot named ${fullName} already exists`);
      throw err;
    }
    return { robot: await this.#robotOrThrow(id), secret };
  }

  /** One page of robots of a level (of one project for project level), and how many there are. */
  async list(guard: RobotGuard, query: RobotListQuery): Promise<{ total: number; robots: Robot[] }> {
    guard.requireLogin();
    let projectId: number | null = null;
    if (query.level === 'project') {
      if (query.projectId === undefined) throw badRequest('listing project robots needs the project: q=Level=project,ProjectID=<id>');
      projectId = (await guard.requireProject(query.projectId, 'list')).id;
    } else {
      guard.requireSystem('list');
    }
    let base = this.#db.selectFrom('robots').where('level', '=', query.level);
    if (projectId !== null) base = base.where('project_id', '=', projectId);
    if (query.name?.match === 'exact') {
      base = base.where('name', 'in', [query.name.value, `${this.#prefix}${query.name.value}`]);
    } else if (query.name?.match === 'fuzzy') {
      const pattern = `%${query.name.value.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      base = base.where(sql<boolean>`lower(name) like ${pattern} escape '\\'`);
    }
    const count = await base.select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow();
    const sort = query.sort ?? { field: 'id', descending: false };
    const rows = await base
      .select(ROW_COLUMNS)
      .orderBy(SORT_COLUMNS[sort.field], sort.descending ? 'desc' : 'asc')
      .orderBy('id', sort.descending ? 'desc' : 'asc')
      .limit(query.limit)
      .offset(query.offset)
      .execute();
    const projects = new Map<number, ProjectRef | undefined>();
    const robots: Robot[] = [];
    for (const row of rows) robots.push(await this.#robotOf(normaliseRow(row), projects));
    return { total: Number(count.n), robots };
  }

  async get(guard: RobotGuard, id: number): Promise<Robot> {
    const row = await this.#authorised(guard, id, 'read');
    return this.#robotOf(row);
  }

  /**
   * Harbor's PUT: description, disable, duration (counted from creation) and permissions. Name
   * and level cannot change. New permissions must all be held by the caller.
   */
  async update(guard: RobotGuard, id: number, input: RobotUpdateInput): Promise<Robot> {
    const row = await this.#authorised(guard, id, 'update');
    if (input.level !== undefined && input.level !== row.level) throw badRequest('the level of a robot cannot be changed');
    if (input.name !== undefined && input.name !== row.name && `${this.#prefix}${input.name}` !== row.name && input.name !== this.#shortName(row)) {
      throw badRequest('the name of a robot cannot be changed');
    }
    const description = input.description === undefined ? row.description : checkDescription(input.description);
    const duration = input.duration === undefined ? row.duration : checkDuration(input.duration);
    let permissionsJson = row.permissions;
    if (input.permissions !== undefined) {
      const level = row.level;
      const requested = checkPermissionShapes(level, input.permissions);
      let project: ProjectRef | undefined;
      if (level === 'project') {
        project = row.project_id === null ? undefined : await this.#projects.find(row.project_id);
        if (!project) throw notFound(`robot ${id} not found`);
        const named = await this.#projects.find(requested[0]?.namespace ?? '');
        if (named?.id !== project.id) throw badRequest(`a project robot's permissions must name its own project, ${project.name}`);
      }
      const permissions = await this.#resolve(level, requested, project);
      await this.#assertGrantable(guard.subject, permissions);
      permissionsJson = JSON.stringify(permissions.map(toStored));
    }
    const disabled = input.disable === undefined ? row.disabled : input.disable ? 1 : 0;
    const expiresAt = duration === row.duration ? row.expires_at : duration === -1 ? -1 : row.created_at + duration * DAY_MS;
    await this.#db
      .updateTable('robots')
      .set({ description, duration, expires_at: expiresAt, disabled, permissions: permissionsJson, updated_at: this.#now() })
      .where('id', '=', id)
      .execute();
    this.#onCredentialsChanged();
    return this.#robotOrThrow(id);
  }

  /**
   * A new secret (Harbor's PATCH): the caller's own (IsValidSec) or a generated one, returned.
   * The caller gets working credentials, so it must hold everything the robot holds.
   */
  async refreshSecret(guard: RobotGuard, id: number, secret?: string): Promise<string> {
    const row = await this.#authorised(guard, id, 'update');
    if (secret !== undefined) checkSecretText(secret);
    await this.#assertGrantable(guard.subject, await this.#storedPermissions(row, new Map()), 'refresh the secret of this robot');
    const plain = secret ?? generateSecret();
    const secretHash = await hashPassword(plain);
    await this.#db.updateTable('robots').set({ secret_hash: secretHash, updated_at: this.#now() }).where('id', '=', id).execute();
    this.#onCredentialsChanged();
    return plain;
  }

  async delete(guard: RobotGuard, id: number): Promise<void> {
    await this.#authorised(guard, id, 'delete');
    await this.#db.deleteFrom('robots').where('id', '=', id).execute();
    this.#onCredentialsChanged();
  }

  // ── internals ───────────────────────────────────────────────────────────

  /** The robot's row once the guard allows `action` on robots of its project or of the system; 404 when none. */
  async #authorised(guard: RobotGuard, id: number, action: Action): Promise<RobotRow> {
    guard.requireLogin();
    const row = await this.#rowById(id);
    if (!row) throw notFound(`robot ${id} not found`);
    if (row.level === 'project') {
      if (row.project_id === null) throw notFound(`robot ${id} not found`);
      await guard.requireProject(row.project_id, action);
    } else {
      guard.requireSystem(action);
    }
    return row;
  }

  async #rowById(id: number): Promise<RobotRow | undefined> {
    if (!Number.isSafeInteger(id) || id < 1) return undefined;
    const row = await this.#db.selectFrom('robots').select(ROW_COLUMNS).where('id', '=', id).executeTakeFirst();
    return row ? normaliseRow(row) : undefined;
  }

  async #rowByName(name: string): Promise<RobotRow | undefined> {
    const row = await this.#db.selectFrom('robots').select(ROW_COLUMNS).where('name', '=', name).executeTakeFirst();
    return row ? normaliseRow(row) : undefined;
  }

  async #robotOrThrow(id: number): Promise<Robot> {
    const row = await this.#rowById(id);
    if (!row) throw notFound(`robot ${id} not found`);
    return this.#robotOf(row);
  }

  #usable(row: RobotRow): boolean {
    if (row.disabled !== 0) return false;
    return row.expires_at === -1 || row.expires_at > this.#now();
  }

  /** The part of the name after the prefix (and `<project>+` for project robots). */
  #shortName(row: RobotRow): string {
    const rest = row.name.startsWith(this.#prefix) ? row.name.slice(this.#prefix.length) : row.name;
    const plus = rest.lastIndexOf('+');
    return row.level === 'project' && plus >= 0 ? rest.slice(plus + 1) : rest;
  }

  /**
   * The stored permission sets with their projects as they are now: sets of projects that are
   * gone are dropped (a new project that took the name has another id and is not matched).
   */
  async #storedPermissions(row: RobotRow, projects: Map<number, ProjectRef | undefined>): Promise<ResolvedPermission[]> {
    const out: ResolvedPermission[] = [];
    for (const stored of parseStored(row.permissions)) {
      if (stored.kind === 'project' && stored.namespace !== '*') {
        if (stored.project_id === undefined) continue;
        if (!projects.has(stored.project_id)) projects.set(stored.project_id, await this.#projects.find(stored.project_id));
        const project = projects.get(stored.project_id);
        if (project === undefined) continue;
        out.push({ kind: 'project', namespace: project.name, project, access: stored.access });
      } else {
        out.push({ kind: stored.kind, namespace: stored.kind === 'system' ? '/' : '*', access: stored.access });
      }
    }
    return out;
  }

  async #robotOf(row: RobotRow, projects = new Map<number, ProjectRef | undefined>()): Promise<Robot> {
    return {
      id: row.id,
      name: row.name,
      description: row.description,
      level: row.level,
      projectId: row.project_id,
      disabled: row.disabled !== 0,
      duration: row.duration,
      expiresAt: row.expires_at,
      permissions: (await this.#storedPermissions(row, projects)).map((p) => ({ kind: p.kind, namespace: p.namespace, access: p.access })),
      creatorType: row.creator_type,
      creatorRef: Number(row.creator_ref) || 0,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    };
  }

  async #subjectOf(row: RobotRow): Promise<RobotSubject> {
    const access: RobotAccess[] = [];
    for (const set of await this.#storedPermissions(row, new Map())) {
      for (const a of set.access) access.push({ kind: set.kind, namespace: set.namespace, resource: a.resource, action: a.action });
    }
    return { kind: 'robot', id: row.id, name: row.name, access };
  }

  /**
   * Resolves the namespaces of checked permission sets: project names (or ids) to projects (404
   * when unknown), merging sets that name the same namespace; then push must come with pull.
   */
  async #resolve(level: RobotLevel, requested: readonly RobotPermissionInput[], project: ProjectRef | undefined): Promise<ResolvedPermission[]> {
    const byKey = new Map<string, { kind: RobotLevel; namespace: string; project?: ProjectRef; access: Map<string, RobotAccessEntry> }>();
    for (const set of requested) {
      const kind = set.kind as RobotLevel;
      let namespace = set.namespace;
      let ref: ProjectRef | undefined;
      if (kind === 'project' && namespace !== '*') {
        ref = level === 'project' && project ? project : await this.#projects.find(namespace);
        if (!ref) throw notFound(`project ${namespace} not found`);
        namespace = ref.name;
      }
      const key = ref ? `project:${ref.id}` : `${kind}:${namespace}`;
      let entry = byKey.get(key);
      if (!entry) {
        entry = { kind, namespace, ...(ref ? { project: ref } : {}), access: new Map() };
        byKey.set(key, entry);
      }
      for (const a of set.access) entry.access.set(`${a.resource}:${a.action}`, { resource: a.resource, action: a.action, effect: 'allow' });
    }
    const resolved = [...byKey.values()].map((e) => ({ kind: e.kind, namespace: e.namespace, ...(e.project ? { project: e.project } : {}), access: [...e.access.values()] }));
    for (const set of resolved) {
      if (set.access.some((a) => a.resource === 'repository' && a.action === 'push') && !set.access.some((a) => a.resource === 'repository' && a.action === 'pull')) {
        throw badRequest(`push on repository needs pull on repository too (namespace ${set.namespace})`);
      }
    }
    return resolved;
  }

  /** 403 naming the first permission the subject does not hold itself. */
  async #assertGrantable(subject: Subject, permissions: readonly ResolvedPermission[], what = 'grant'): Promise<void> {
    for (const set of permissions) {
      for (const a of set.access) {
        if (!(await this.#holds(subject, set, a))) {
          const where = set.kind === 'system' ? 'the system' : set.namespace === '*' ? 'every project' : `project ${set.namespace}`;
          throw forbidden(`not allowed to ${what}: ${a.action} on ${a.resource} in ${where} is more than the caller holds`);
        }
      }
    }
  }

  async #holds(subject: Subject, set: ResolvedPermission, a: RobotAccessEntry): Promise<boolean> {
    if (subject.kind === 'user' && subject.sysadmin) return true;
    if (set.kind === 'system') return this.#access.canSystem(subject, a.resource as SystemResource, a.action as Action);
    if (set.project) return this.#access.can(subject, set.project, a.resource as Parameters<AccessControl['can']>[2], a.action as Action);
    // Every project, including future ones: only a sysadmin, or a robot that itself holds it everywhere.
    if (subject.kind !== 'robot') return false;
    return subject.access.some(
      (held) => held.kind === 'project' && held.namespace === '*' && (held.resource === a.resource || held.resource === '*') && (held.action === a.action || held.action === '*'),
    );
  }
}

// ── validation (no I/O) ───────────────────────────────────────────────────

function parseLevel(level: string): RobotLevel {
  if (level !== 'system' && level !== 'project') throw badRequest(`level must be "system" or "project", got ${JSON.stringify(level)}`);
  return level;
}

function checkName(name: string): string {
  if (typeof name !== 'string' || name.length < 1 || name.length > ROBOT_NAME_MAX) throw badRequest(`robot name must be 1 to ${ROBOT_NAME_MAX} characters`);
  if (!NAME_PATTERN.test(name)) {
    throw badRequest(`robot name ${JSON.stringify(name)} is invalid: use lowercase letters and digits, separated by single '.', '_' or '-'`);
  }
  return name;
}

function checkDescription(description: string): string {
  if (typeof description !== 'string' || description.length > ROBOT_DESCRIPTION_MAX) throw badRequest(`description must be at most ${ROBOT_DESCRIPTION_MAX} characters`);
  return description;
}

function checkDuration(duration: number): number {
  if (duration === -1) return -1;
  if (!Number.isInteger(duration) || duration < 1 || duration > ROBOT_MAX_DAYS) {
    throw badRequest(`duration must be -1 (never expires) or a whole number of days from 1 to ${ROBOT_MAX_DAYS}, got ${duration}`);
  }
  return duration;
}

function checkSecretText(secret: string): void {
  const problems = checkRobotSecret(secret);
  if (problems.length > 0) throw badRequest(problems.map((p) => p.message).join(' '));
}

/** Shapes, kinds, namespaces, effects and (resource, action) pairs; no project lookups. */
function checkPermissionShapes(level: RobotLevel, permissions: readonly RobotPermissionInput[] | undefined): RobotPermissionInput[] {
  if (!Array.isArray(permissions) || permissions.length === 0) throw badRequest('permissions: give at least one permission set');
  if (level === 'project' && permissions.length !== 1) throw badRequest('a project robot takes exactly one permission set, for its project');
  for (const set of permissions) {
    if (set.kind !== 'system' && set.kind !== 'project') throw badRequest(`permission kind must be "system" or "project", got ${JSON.stringify(set.kind)}`);
    if (level === 'project' && set.kind !== 'project') throw badRequest('a project robot can only hold project permissions');
    if (set.kind === 'system' && set.namespace !== '/') throw badRequest(`the namespace of system permissions is "/", got ${JSON.stringify(set.namespace)}`);
    if (set.kind === 'project') {
      if (typeof set.namespace !== 'string' || set.namespace === '') throw badRequest('the namespace of project permissions is a project name (or "*" for every project)');
      if (set.namespace === '*' && level === 'project') throw badRequest('a project robot belongs to one project: name it instead of "*"');
    }
    if (!Array.isArray(set.access) || set.access.length === 0) throw badRequest(`permissions for ${set.namespace}: give at least one access`);
    const pairs = set.kind === 'system' ? SYSTEM_PAIRS : PROJECT_PAIRS;
    for (const a of set.access) {
      if (a.effect !== undefined && a.effect !== 'allow') {
        throw badRequest(`effect ${JSON.stringify(a.effect)} is not supported: robots hold only "allow" permissions (leave out what they may not do)`);
      }
      if (!pairs.has(`${a.resource}:${a.action}`)) {
        throw badRequest(`${a.action} on ${a.resource} is not a ${set.kind} permission a robot can hold; GET /api/v2.0/permissions lists them`);
      }
    }
  }
  return [...permissions];
}

function toStored(set: ResolvedPermission): StoredPermission {
  return { kind: set.kind, namespace: set.namespace, ...(set.project ? { project_id: set.project.id } : {}), access: set.access };
}

function parseStored(json: string): StoredPermission[] {
  try {
    const parsed: unknown = JSON.parse(json);
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(
      (p): p is StoredPermission => typeof p === 'object' && p !== null && (p.kind === 'system' || p.kind === 'project') && typeof p.namespace === 'string' && Array.isArray(p.access),
    );
  } catch {
    return [];
  }
}

function creatorOf(subject: Subject): { type: string; ref: string } {
  if (subject.kind === 'robot') return { type: 'robot', ref: String(subject.id) };
  if (subject.kind === 'user') return { type: 'local', ref: String(subject.id) };
  return { type: 'local', ref: '0' };
}

/** Rows from node:sqlite have a null prototype and PostgreSQL may give numbers as strings. */
function normaliseRow(row: Record<string, unknown>): RobotRow {
  return {
    id: Number(row.id),
    name: String(row.name),
    description: String(row.description),
    level: row.level === 'project' ? 'project' : 'system',
    project_id: row.project_id === null || row.project_id === undefined ? null : Number(row.project_id),
    secret_hash: String(row.secret_hash),
    disabled: Number(row.disabled),
    duration: Number(row.duration),
    expires_at: Number(row.expires_at),
    permissions: String(row.permissions),
    creator_type: String(row.creator_type),
    creator_ref: String(row.creator_ref),
    created_at: Number(row.created_at),
    updated_at: Number(row.updated_at),
  };
}
