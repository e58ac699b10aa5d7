/**
 * Docker token auth for /v2, as docker, podman, skopeo, containerd and helm expect it:
 *
 * - the guard: every /v2 request needs a bearer token from /service/token covering what it does
 *   (or Basic credentials, checked directly as Harbor allows); otherwise 401 with a challenge
 *   naming the realm, service and scope. An authenticated caller without the right gets 403
 *   DENIED, or 404 NAME_UNKNOWN when the project does not exist (a push to a missing project).
 * - GET /service/token: Basic credentials (user or robot) or none, one or more `scope`
 *   parameters; answers a signed token granting the intersection of what was asked and what the
 *   caller may do. Anonymous callers get pull on public projects only.
 *
 * The hot path (a verified token, cached by TokenService) touches no database.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError, useManagementApiConventions } from '../platform/http/api.ts';
import { OciError } from '../platform/oci/errors.ts';
import type { RegistryCaller, RegistryGuard } from '../registry/routes.ts';
import type { V2Route } from '../registry/router.ts';
import type { AccessControl, ProjectDirectory, ProjectRef } from './access.ts';
import { type Authenticator, loginClientOf, parseBasic, parseBearer } from './authenticate.ts';
import type { Subject } from './rbac.ts';
import { bearerChallenge, parseScopes, projectOfRepository, REPOSITORY_ACTIONS, type ResourceAccess, requiredAccess, ScopeError } from './scopes.ts';
import { type TokenAccess, TokenError, type TokenService } from './tokens.ts';

export interface RegistryAuthDeps {
  readonly tokens: TokenService;
  readonly authenticator: Authenticator;
  readonly projects: ProjectDirectory;
  readonly access: AccessControl;
  /** server.externalUrl; empty means the realm is built from the request's Host. */
  readonly externalUrl: string;
}

/** The project of a repository name, or undefined for a name with no project part (`nginx`). */
function projectNameOf(repository: string): string | undefined {
  return repository.includes('/') ? projectOfRepository(repository) : undefined;
}

/** Expands `*` and keeps only repository actions we know. */
function repositoryActions(actions: readonly string[]): string[] {
  return actions.includes('*') ? [...REPOSITORY_ACTIONS] : actions.filter((a) => (REPOSITORY_ACTIONS as readonly string[]).includes(a));
}

/** Does a granted access list cover a needed one? */
function covers(granted: readonly TokenAccess[], needed: ResourceAccess): boolean {
  const entry = granted.find((g) => g.type === needed.type && g.name === needed.name);
  if (!entry) return false;
  return entry.actions.includes('*') || needed.actions.every((a) => entry.actions.includes(a));
}

/** What `subject` may do on each requested resource: the token's grant. Unknown projects grant nothing. */
export async function grantFor(subject: Subject, requested: readonly ResourceAccess[], deps: Pick<RegistryAuthDeps, 'projects' | 'access'>): Promise<ResourceAccess[]> {
  const granted: ResourceAccess[] = [];
  const projects = new Map<string, ProjectRef | undefined>();
  for (const r of requested) {
    let actions: string[] = [];
    if (r.type === 'registry' && r.name === 'catalog') {
      // Any logged-in caller may list the catalog; it shows only what they may see.
      actions = subject.kind === 'anonymous' ? [] : ['*'];
    } else if (r.type === 'repository') {
      const projectName = projectNameOf(r.name);
      if (projectName !== undefined) {
        if (!projects.has(projectName)) projects.set(projectName, await deps.projects.find(projectName));
        const project = projects.get(projectName);
        if (project) {
          for (const action of repositoryActions(r.actions)) {
            if (await deps.access.can(subject, project, 'repository', action as 'pull' | 'push' | 'delete')) actions.push(action);
          }
        }
      }
    }
    if (actions.length > 0) granted.push({ type: r.type, name: r.name, actions });
  }
  return granted;
}

export class RegistryAuth implements RegistryGuard {
  readonly #deps: RegistryAuthDeps;

  constructor(deps: RegistryAuthDeps) {
    this.#deps = deps;
  }

  realm(request: FastifyRequest): string {
    const base = this.#deps.externalUrl.replace(/\/+$/, '');
    return `${base || `${request.protocol}://${request.host}`}/service/token`;
  }

  #challenge(request: FastifyRequest, needed: readonly ResourceAccess[], message: string, error?: 'invalid_token' | 'insufficient_scope'): OciError {
    return new OciError('UNAUTHORIZED', message, undefined, { 'www-authenticate': bearerChallenge(this.realm(request), this.#deps.tokens.service, needed, error) });
  }

  async check(request: FastifyRequest, route: V2Route, query: Readonly<Record<string, string | undefined>>): Promise<RegistryCaller> {
    const needed = requiredAccess(request.method, route, query);
    const authorization = request.headers.authorization;
    const token = parseBearer(authorization);
    if (token !== undefined) {
      let verified: Awaited<ReturnType<TokenService['verify']>>;
      try {
        verified = await this.#deps.tokens.verify(token);
      } catch (err) {
        if (err instanceof TokenError) throw this.#challenge(request, needed, `invalid token: ${err.message}`, 'invalid_token');
        throw err;
      }
      if (verified.subject !== '') request.actor = { name: verified.subject, kind: this.#deps.authenticator.isRobotName(verified.subject) ? 'robot' : 'user' };
      if (needed.every((n) => covers(verified.access, n))) {
        if (await this.#predatesAProject(needed, verified.issuedAt)) throw this.#challenge(request, needed, 'the token was issued before the project was created; get a new one', 'invalid_token');
        return route.kind === 'catalog' ? this.#catalogCaller(await this.#subjectOf(verified.subject)) : {};
      }
      const subject = verified.subject === '' ? undefined : await this.#subjectOf(verified.subject);
      throw await this.#refusal(request, needed, subject, 'insufficient_scope');
    }
    const basic = parseBasic(authorization);
    if (!basic) throw this.#challenge(request, needed, 'authentication required');
    let subject: Subject;
    try {
      subject = await this.#deps.authenticator.login(basic.username, basic.password, request.ip, loginClientOf(request));
    } catch (err) {
      if (err instanceof ApiError && err.code === 'TOO_MANY_REQUESTS') throw new OciError('TOOMANYREQUESTS', err.message, undefined, err.headers);
      if (err instanceof ApiError && err.code === 'UNAUTHORIZED') throw this.#challenge(request, needed, err.message);
      throw err;
    }
    request.actor = { name: subject.name, kind: subject.kind };
    const granted = await grantFor(subject, needed, this.#deps);
    if (needed.every((n) => covers(granted, n))) return route.kind === 'catalog' ? this.#catalogCaller(subject) : {};
    throw await this.#refusal(request, needed, subject);
  }

  /**
   * A token names projects by name only. One issued before a project of that name was created was
   * granted on an older project (deleted since) and must not open the new one (Harbor checks this too).
   */
  async #predatesAProject(needed: readonly ResourceAccess[], issuedAtSeconds: number): Promise<boolean> {
    for (const n of needed) {
      const projectName = n.type === 'repository' ? projectNameOf(n.name) : undefined;
      if (projectName === undefined) continue;
      const project = await this.#deps.projects.find(projectName);
      // iat has whole seconds: a project created within the token's second is not newer than it.
      if (project && project.createdAt >= (issuedAtSeconds + 1) * 1000) return true;
    }
    return false;
  }

  async #subjectOf(name: string): Promise<Subject> {
    const subject = await this.#deps.authenticator.subjectByName(name);
    // The user or robot was deleted or disabled after the token was issued.
    if (!subject) throw new OciError('UNAUTHORIZED', 'the account this token was issued to no longer exists or is disabled');
    return subject;
  }

  /** Anonymous callers are challenged; a known caller is told what is wrong. */
  async #refusal(request: FastifyRequest, needed: readonly ResourceAccess[], subject: Subject | undefined, error?: 'insufficient_scope'): Promise<OciError> {
    if (!subject || subject.kind === 'anonymous') return this.#challenge(request, needed, 'authentication required', error);
    for (const n of needed) {
      if (n.type !== 'repository') continue;
      const projectName = projectNameOf(n.name);
      if (projectName === undefined) return new OciError('NAME_UNKNOWN', `repository ${n.name} is in no project: name it <project>/<repository>`, { name: n.name });
      if (!(await this.#deps.projects.find(projectName))) return new OciError('NAME_UNKNOWN', `project ${projectName} not found: create it first`, { name: n.name });
    }
    return new OciError('DENIED', 'requested access to the resource is denied');
  }

  /** Catalog entries the subject may see: a sysadmin everything, others the repositories they may list. */
  #catalogCaller(subject: Subject): RegistryCaller {
    if (subject.kind === 'user' && subject.sysadmin) return {};
    const visible = new Map<string, Promise<boolean>>();
    return {
      canSee: (repository) => {
        const projectName = projectNameOf(repository);
        if (projectName === undefined) return false;
        let answer = visible.get(projectName);
        if (!answer) {
          answer = this.#deps.projects.find(projectName).then((project) => (project ? this.#deps.access.can(subject, project, 'repository', 'list') : false));
          visible.set(projectName, answer);
        }
        return answer;
      },
    };
  }
}

/** GET /service/token (root scope, Harbor's error shape). */
export async function tokenRoutes(app: FastifyInstance, deps: Omit<RegistryAuthDeps, 'externalUrl'>): Promise<void> {
  await app.register(async (scope) => {
    useManagementApiConventions(scope, { notFound: false });
    scope.get('/service/token', async (request, reply) => {
      const query = request.query as Record<string, string | string[] | undefined>;
      const service = Array.isArray(query.service) ? query.service[0] : query.service;
      if (service !== undefined && service !== deps.tokens.service) throw new ApiError('BAD_REQUEST', `unknown service "${service}"; this registry is "${deps.tokens.service}"`);
      let requested: ResourceAccess[];
      try {
        requested = parseScopes(query.scope);
      } catch (err) {
        if (err instanceof ScopeError) throw new ApiError('BAD_REQUEST', err.message);
        throw err;
      }
      const authorization = request.headers.authorization;
      let subject: Subject = { kind: 'anonymous' };
      if (authorization !== undefined) {
        const basic = parseBasic(authorization);
        if (!basic) throw new ApiError('UNAUTHORIZED', 'send Basic credentials or none', { 'www-authenticate': 'Basic realm="berth"' });
        subject = await deps.authenticator.login(basic.username, basic.password, request.ip, loginClientOf(request));
      } else if (requested.length === 0) {
        // `docker login` without credentials; an anonymous token without scope is good for nothing.
        throw new ApiError('UNAUTHORIZED', 'log in, or ask for a scope', { 'www-authenticate': 'Basic realm="berth"' });
      }
      const granted = await grantFor(subject, requested, deps);
      const issued = await deps.tokens.issue(subject.kind === 'anonymous' ? '' : subject.name, granted);
      return reply.header('cache-control', 'no-store').send(issued);
    });
  });
}
