/**
 * Who is calling (request.subject, set once per request by the authentication hook) and the
 * guard every management-API route calls: `access.require…` asks the one RBAC function
 * (rbac.ts isAllowed) and turns a refusal into 401 (nobody logged in) or 403.
 */
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../platform/http/api.ts';
import { type Action, isAllowed, type ProjectContext, type ProjectResource, type Subject, type SystemResource } from './rbac.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; anonymous when no credentials came. Set by the auth hook. */
    subject: Subject;
    /** How the caller authenticated; a session also needs a CSRF token on state changes. */
    authVia: 'anonymous' | 'basic' | 'session' | 'bearer';
  }
}

export const ANONYMOUS: Subject = Object.freeze({ kind: 'anonymous' });

/** A project as authorisation needs it. */
export interface ProjectRef {
  readonly id: number;
  readonly name: string;
  readonly public: boolean;
  /** Epoch milliseconds: registry tokens issued before a project existed are not valid for it. */
  readonly createdAt: number;
}

/** What the authoriser asks of the projects capability (implemented in src/projects). */
export interface ProjectDirectory {
  /** By name, or by id when `nameOrId` is all digits (Harbor's `project_name_or_id`). */
  find(nameOrId: string | number): Promise<ProjectRef | undefined>;
  /** The user's roles in the project (direct memberships). */
  rolesOf(userId: number, projectId: number): Promise<number[]>;
}

/**
 * A ProjectDirectory that remembers projects by name for a short while: the /v2 guard asks for
 * the same few projects on every request. A change made on this node clears it at once (call
 * `forget`); one made on another node shows here within `ttlMs`. Roles are not cached.
 */
export class CachedProjectDirectory implements ProjectDirectory {
  readonly #inner: ProjectDirectory;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #byName = new Map<string, { ref: ProjectRef | undefined; until: number }>();

  constructor(inner: ProjectDirectory, options: { ttlMs?: number; now?: () => number } = {}) {
    this.#inner = inner;
    this.#ttlMs = options.ttlMs ?? 2000;
    this.#now = options.now ?? Date.now;
  }

  async find(nameOrId: string | number): Promise<ProjectRef | undefined> {
    if (typeof nameOrId === 'number' || /^\d+$/.test(nameOrId)) return this.#inner.find(nameOrId);
    const now = this.#now();
    const hit = this.#byName.get(nameOrId);
    if (hit && hit.until > now) return hit.ref;
    const ref = await this.#inner.find(nameOrId);
    if (this.#byName.size >= 10_000) this.#byName.clear();
    this.#byName.set(nameOrId, { ref, until: now + this.#ttlMs });
    return ref;
  }

  rolesOf(userId: number, projectId: number): Promise<number[]> {
    return this.#inner.rolesOf(userId, projectId);
  }

  forget(): void {
    this.#byName.clear();
  }
}

export class AccessControl {
  readonly #projects: ProjectDirectory;

  constructor(projects: ProjectDirectory) {
    this.#projects = projects;
  }

  /** The subject's view of a project: visibility and roles. */
  async context(subject: Subject, project: ProjectRef): Promise<ProjectContext> {
    const roles = subject.kind === 'user' && !subject.sysadmin ? await this.#projects.rolesOf(subject.id, project.id) : [];
    return { name: project.name, public: project.public, roles };
  }

  async can(subject: Subject, project: ProjectRef, resource: ProjectResource, action: Action): Promise<boolean> {
    if (subject.kind === 'user' && subject.sysadmin) return true;
    return isAllowed(subject, { scope: 'project', project: await this.context(subject, project), resource, action });
  }

  canSystem(subject: Subject, resource: SystemResource, action: Action): boolean {
    return isAllowed(subject, { scope: 'system', resource, action });
  }

  /**
   * The project named (or numbered) `nameOrId`, if the caller may do `action` on `resource` in it.
   * A project the caller may not even read answers 404 rather than 403, so that private project
   * names do not leak; one it may read but not act on answers 403 (401 when anonymous).
   */
  async requireProject(request: FastifyRequest, nameOrId: string | number, resource: ProjectResource, action: Action): Promise<ProjectRef> {
    const project = await this.#projects.find(nameOrId);
    if (!project) throw new ApiError('NOT_FOUND', `project ${nameOrId} not found`);
    const subject = request.subject;
    if (await this.can(subject, project, resource, action)) return project;
    if (subject.kind === 'anonymous') throw new ApiError('UNAUTHORIZED', 'log in first');
    if (!(await this.#sees(subject, project))) throw new ApiError('NOT_FOUND', `project ${nameOrId} not found`);
    throw new ApiError('FORBIDDEN', `not allowed to ${action} ${resource} in project ${project.name}`);
  }

  /** Whether the project's existence may be revealed: it can read it, or (a robot) holds any permission in it. */
  async #sees(subject: Subject, project: ProjectRef): Promise<boolean> {
    if (subject.kind === 'robot' && subject.access.some((a) => a.kind === 'project' && (a.namespace === project.name || a.namespace === '*'))) return true;
    return this.can(subject, project, 'project', 'read');
  }

  /** A system-level permission (users, quotas, the catalog …), or 401/403. */
  requireSystem(request: FastifyRequest, resource: SystemResource, action: Action): void {
    if (this.canSystem(request.subject, resource, action)) return;
    if (request.subject.kind === 'anonymous') throw new ApiError('UNAUTHORIZED', 'log in first');
    throw new ApiError('FORBIDDEN', `not allowed to ${action} ${resource}`);
  }

  /** Any logged-in caller (user or robot), or 401. */
  requireLogin(request: FastifyRequest): Exclude<Subject, { kind: 'anonymous' }> {
    if (request.subject.kind === 'anonymous') throw new ApiError('UNAUTHORIZED', 'log in first');
    return request.subject;
  }

  /** A logged-in user (not a robot), or 401/403. */
  requireUser(request: FastifyRequest): Extract<Subject, { kind: 'user' }> {
    const subject = this.requireLogin(request);
    if (subject.kind !== 'user') throw new ApiError('FORBIDDEN', 'robot accounts cannot do this');
    return subject;
  }
}
