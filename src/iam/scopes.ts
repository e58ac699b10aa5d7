/**
 * Docker token-auth scopes: parsing the `scope` parameters of GET /service/token, the access a /v2
 * request needs, and the `WWW-Authenticate` challenge that asks a client for it.
 *
 * Grammar (distribution's docs/spec/auth/scope.md):
 *   scope         := resourcescope [ ' ' resourcescope ]*
 *   resourcescope := resourcetype ":" resourcename ":" action [ ',' action ]*
 *   resourcetype  := [a-z0-9]+ [ '(' [a-z0-9]+ ')' ]
 *   resourcename  := [ hostname '/' ] component [ '/' component ]*
 * The resource name may itself hold a colon (`localhost:5000/app`), so the last `:` part is the
 * action list and the parts between the first and the last are joined again, as Harbor does.
 */
import { isValidRepositoryName, MAX_NAME_LENGTH } from '../platform/oci/names.ts';
import type { V2Route } from '../registry/router.ts';

export type RepositoryAction = 'pull' | 'push' | 'delete';

/** One resource and the actions on it: a requested scope, a needed access or a granted one. */
export interface ResourceAccess {
  readonly type: 'repository' | 'registry';
  readonly name: string;
  readonly actions: readonly string[];
}

/** A scope that does not follow the grammar. The token endpoint answers it with 400. */
export class ScopeError extends Error {
  /** The offending scope as the client sent it. */
  readonly scope: string;

  constructor(scope: string, reason: string) {
    super(`invalid scope "${scope}": ${reason}`);
    this.name = 'ScopeError';
    this.scope = scope;
  }
}

/** Repository actions in their canonical order (the order scopes and tokens list them in). */
export const REPOSITORY_ACTIONS: readonly RepositoryAction[] = ['pull', 'push', 'delete'];

const RESOURCE_TYPE = /^[a-z0-9]+(?:\([a-z0-9]+\))?$/;
// hostname := hostcomponent ['.' hostcomponent]* [':' port-number]
const HOST_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOSTNAME = new RegExp(`^${HOST_COMPONENT}(?:\\.${HOST_COMPONENT})*(?::[0-9]+)?$`);

/**
 * A repository name as a scope may carry it: a plain repository name, or one prefixed with the
 * registry's host (`localhost:5000/team/app`), which the scope grammar allows.
 */
export function isValidScopeRepositoryName(name: string): boolean {
  if (isValidRepositoryName(name)) return true;
  if (name.length > MAX_NAME_LENGTH) return false;
  const slash = name.indexOf('/');
  if (slash <= 0) return false;
  return HOSTNAME.test(name.slice(0, slash)) && isValidRepositoryName(name.slice(slash + 1));
}

/** The project a repository belongs to: its first path segment (Harbor's rule). */
export function projectOfRepository(name: string): string {
  const slash = name.indexOf('/');
  return slash < 0 ? name : name.slice(0, slash);
}

function parseOne(scope: string): ResourceAccess | undefined {
  const parts = scope.split(':');
  if (parts.length < 3) throw new ScopeError(scope, 'expected type:name:actions');
  const type = parts[0] as string;
  const actionList = parts[parts.length - 1] as string;
  const name = parts.slice(1, -1).join(':');
  if (type === '') throw new ScopeError(scope, 'empty resource type');
  if (!RESOURCE_TYPE.test(type)) throw new ScopeError(scope, `invalid resource type "${type}"`);
  if (name === '') throw new ScopeError(scope, 'empty resource name');
  if (actionList === '') throw new ScopeError(scope, 'no actions');
  const actions = actionList.split(',');
  if (actions.includes('')) throw new ScopeError(scope, 'empty action in the action list');

  if (type === 'repository') {
    if (!isValidScopeRepositoryName(name)) throw new ScopeError(scope, `invalid repository name "${name}"`);
    const wanted = new Set<string>();
    for (const action of actions) {
      if (action === '*') for (const a of REPOSITORY_ACTIONS) wanted.add(a);
      else if ((REPOSITORY_ACTIONS as readonly string[]).includes(action)) wanted.add(action);
      else throw new ScopeError(scope, `unknown action "${action}" for a repository`);
    }
    return { type, name, actions: REPOSITORY_ACTIONS.filter((a) => wanted.has(a)) };
  }
  if (type === 'registry') {
    if (name !== 'catalog') throw new ScopeError(scope, `unknown registry resource "${name}" (only "catalog")`);
    for (const action of actions) {
      if (action !== '*') throw new ScopeError(scope, `unknown action "${action}" for registry:catalog (only "*")`);
    }
    return { type, name, actions: ['*'] };
  }
  // A well-formed scope of a type we do not serve (e.g. `repository(plugin)`) grants nothing,
  // as in Harbor; it is not an error.
  return undefined;
}

/**
 * Parses every `scope` query value (a repeated parameter arrives as an array). Each value may hold
 * several scopes separated by spaces. Scopes naming the same resource are merged; `*` on a
 * repository expands to pull, push and delete. Throws ScopeError on the first malformed scope.
 */
export function parseScopes(values: string | readonly string[] | undefined): ResourceAccess[] {
  const list = values === undefined ? [] : typeof values === 'string' ? [values] : values;
  const merged = new Map<string, { type: ResourceAccess['type']; name: string; actions: Set<string> }>();
  for (const value of list) {
    for (const scope of value.split(' ')) {
      if (scope === '') continue;
      const access = parseOne(scope);
      if (!access) continue;
      const key = `${access.type}:${access.name}`;
      const entry = merged.get(key) ?? { type: access.type, name: access.name, actions: new Set<string>() };
      for (const a of access.actions) entry.actions.add(a);
      merged.set(key, entry);
    }
  }
  return [...merged.values()].map(({ type, name, actions }) => ({ type, name, actions: canonicalActions(actions) }));
}

function canonicalActions(actions: ReadonlySet<string>): string[] {
  const known = REPOSITORY_ACTIONS.filter((a) => actions.has(a));
  const others = [...actions].filter((a) => !(REPOSITORY_ACTIONS as readonly string[]).includes(a));
  return [...known, ...others];
}

/** `type:name:a,b` — the scope string for one access, as it appears in a challenge or a token request. */
export function formatScope(access: ResourceAccess): string {
  return `${access.type}:${access.name}:${access.actions.join(',')}`;
}

function methodActions(method: string): RepositoryAction[] {
  switch (method.toUpperCase()) {
    case 'GET':
    case 'HEAD':
      return ['pull'];
    case 'POST':
    case 'PUT':
    case 'PATCH':
      return ['pull', 'push'];
    case 'DELETE':
      return ['delete'];
    default:
      // No /v2 route takes another method; ask for everything rather than guess less.
      return ['pull', 'push', 'delete'];
  }
}

/** A `from` query value as the caller has it: decoded by a query parser, or still percent-encoded. */
function mountSource(from: string | readonly string[] | undefined): string | undefined {
  const value = typeof from === 'string' ? from : from?.[0];
  if (value === undefined || value === '') return undefined;
  let name = value;
  if (name.includes('%')) {
    try {
      name = decodeURIComponent(name);
    } catch {
      return undefined;
    }
  }
  // An invalid source cannot be mounted from; the registry then starts a plain upload.
  return isValidRepositoryName(name) ? name : undefined;
}

/**
 * What a /v2 request needs. An empty list means authentication alone (`/v2/`). `query` is the
 * parsed query string; its `from` is the cross-repository mount source of
 * `POST …/blobs/uploads/?mount=…&from=…`, which adds pull on that repository.
 */
export function requiredAccess(
  method: string,
  route: V2Route,
  query: Readonly<Record<string, string | readonly string[] | undefined>> = {},
): ResourceAccess[] {
  switch (route.kind) {
    case 'base':
      return [];
    case 'catalog':
      return [{ type: 'registry', name: 'catalog', actions: ['*'] }];
    default: {
      const needed: ResourceAccess[] = [{ type: 'repository', name: route.name, actions: methodActions(method) }];
      const from = route.kind === 'uploads' && method.toUpperCase() === 'POST' ? mountSource(query['from']) : undefined;
      if (from !== undefined) {
        if (from === route.name) {
          const own = needed[0] as ResourceAccess;
          needed[0] = { ...own, actions: canonicalActions(new Set([...own.actions, 'pull'])) };
        } else {
          needed.push({ type: 'repository', name: from, actions: ['pull'] });
        }
      }
      return needed;
    }
  }
}

/** RFC 9110 quoted-string: escape backslashes and double quotes. */
function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/**
 * The `WWW-Authenticate` value of a 401 on /v2, e.g.
 * `Bearer realm="https://reg.example/service/token",service="berth",scope="repository:a/b:pull,push"`.
 * Several accesses share one scope attribute, separated by spaces; none (for `/v2/`) omits it.
 */
export function bearerChallenge(realm: string, service: string, access: readonly ResourceAccess[], error?: 'invalid_token' | 'insufficient_scope'): string {
  let challenge = `Bearer realm=${quoted(realm)},service=${quoted(service)}`;
  if (access.length > 0) challenge += `,scope=${quoted(access.map(formatScope).join(' '))}`;
  // RFC 6750 §3: when a token was presented, say why it failed; containerd then stops retrying it.
  if (error) challenge += `,error=${quoted(error)}`;
  return challenge;
}
