/**
 * Harbor's user API under /api/v2.0: list, create, read, update, delete users, set the
 * system-admin flag, change passwords, search by name, and what the caller may do in a scope.
 *
 * Who may do what: system admins (and system robots holding `user` permissions) manage every
 * user; a user reads and updates their own profile and changes their own password (giving the
 * current one, which counts as a login attempt for rate limiting); any logged-in caller may search
 * names. Nobody may delete themselves. Self-registration is off: only admins create users.
 * A password change ends the user's other web sessions.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ApiError, badRequest, type PageParams, pageParams, parseQ, setPageHeaders } from '../platform/http/api.ts';
import type { AccessControl } from './access.ts';
import { type Authenticator, loginClientOf } from './authenticate.ts';
import { type Action, projectPermissions, type SystemResource } from './rbac.ts';
import { readSessionCookie, type SessionService } from './sessions.ts';
import { USER_SORT_FIELDS, type TextMatch, type UserRecord, type UserService, type UserSortField } from './users.ts';

export interface UserRoutesDeps {
  readonly users: UserService;
  readonly access: AccessControl;
  readonly authenticator: Authenticator;
  /** When given, a password change ends the user's other web sessions (all of them after an admin reset). */
  readonly sessions?: SessionService;
}

const TAGS = ['user'];

const UserId = Type.Object({ user_id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'The user id' }) });

const UserResp = Type.Object({
  user_id: Type.Integer(),
  username: Type.String(),
  email: Type.String(),
  realname: Type.String(),
  comment: Type.String(),
  sysadmin_flag: Type.Boolean(),
  admin_role_in_auth: Type.Boolean({ description: 'Whether the admin role comes from the authentication backend (always false for local users)' }),
  creation_time: Type.String({ format: 'date-time' }),
  update_time: Type.String({ format: 'date-time' }),
});

const UserCreationReq = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 255 }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
    email: Type.Optional(Type.String({ maxLength: 255 })),
    realname: Type.Optional(Type.String({ maxLength: 255 })),
    comment: Type.Optional(Type.String({ maxLength: 255 })),
  },
  { additionalProperties: false },
);

const UserProfile = Type.Object(
  {
    email: Type.Optional(Type.String({ maxLength: 255 })),
    realname: Type.Optional(Type.String({ maxLength: 255 })),
    comment: Type.Optional(Type.String({ maxLength: 255 })),
  },
  { additionalProperties: false },
);

const PasswordReq = Type.Object(
  {
    old_password: Type.Optional(Type.String({ maxLength: 1024, description: 'The current password; required when changing your own' })),
    new_password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);

const SysAdminFlag = Type.Object({ sysadmin_flag: Type.Boolean() }, { additionalProperties: false });

const Paging = {
  page: Type.Optional(Type.String({ description: 'Page number, from 1' })),
  page_size: Type.Optional(Type.String({ description: 'Page size, 1 to 100 (default 10)' })),
};

const ListQuery = Type.Object({
  q: Type.Optional(Type.String({ description: 'Harbor query: username=~a,email=b (exact or ~fuzzy)' })),
  sort: Type.Optional(Type.String({ description: `Comma-separated fields, - for descending: ${USER_SORT_FIELDS.join(', ')}` })),
  username: Type.Optional(Type.String({ description: 'Username contains this (case-insensitive)' })),
  email: Type.Optional(Type.String({ description: 'Email contains this (case-insensitive)' })),
  ...Paging,
});

const SearchQuery = Type.Object({ username: Type.String({ minLength: 1, description: 'Part of the username' }), ...Paging });

const PermissionsQuery = Type.Object({
  scope: Type.String({ minLength: 1, description: '/system or /project/{project_id}' }),
  relative: Type.Optional(Type.Boolean({ description: 'Resources relative to the scope (repository instead of /project/1/repository)' })),
});

const Permission = Type.Object({ resource: Type.String(), action: Type.String() });

/**
 * Harbor's system-namespace policies (src/common/rbac/system/policies.go) as resource → actions;
 * a system admin holds them all, a system robot those it was granted, a user none.
 */
const SYSTEM_POLICIES: ReadonlyArray<readonly [SystemResource, readonly Action[]]> = [
  ['audit-log', ['list']],
  ['project', ['list', 'create']],
  ['user', ['create', 'read', 'update', 'delete', 'list']],
  ['user-group', ['create', 'read', 'update', 'delete', 'list']],
  ['robot', ['create', 'read', 'update', 'delete', 'list']],
  ['quota', ['read', 'list', 'update']],
  ['catalog', ['read']],
  ['garbage-collection', ['read', 'create', 'list', 'update', 'stop']],
  ['purge-audit', ['read', 'create', 'list', 'update', 'stop']],
  ['jobservice-monitor', ['list', 'stop']],
  ['replication-policy', ['create', 'read', 'update', 'delete', 'list']],
  ['replication', ['read', 'create', 'list']],
  ['registry', ['create', 'read', 'update', 'delete', 'list']],
  ['scanner', ['create', 'read', 'update', 'delete', 'list']],
  ['scan-all', ['read', 'update', 'create', 'stop']],
  ['label', ['create', 'read', 'update', 'delete', 'list']],
  ['configuration', ['read', 'update']],
  ['security-hub', ['read', 'list']],
];

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Harbor's UserResp. Never the password hash. */
export function toUserResp(user: UserRecord) {
  return {
    user_id: user.id,
    username: user.username,
    email: user.email ?? '',
    realname: user.realname,
    comment: user.comment,
    sysadmin_flag: user.sysadmin,
    admin_role_in_auth: false,
    creation_time: iso(user.createdAt),
    update_time: iso(user.updatedAt),
  };
}

function parseSort(sort: string | undefined): Array<{ field: UserSortField; desc: boolean }> {
  if (sort === undefined || sort.trim() === '') return [];
  return sort.split(',').map((part) => {
    const trimmed = part.trim();
    const desc = trimmed.startsWith('-');
    const field = desc ? trimmed.slice(1) : trimmed;
    if (!(USER_SORT_FIELDS as readonly string[]).includes(field)) throw badRequest(`sort: unknown field "${field}"; use ${USER_SORT_FIELDS.join(', ')}`);
    return { field: field as UserSortField, desc };
  });
}

function textFilters(query: { q?: string | undefined; username?: string | undefined; email?: string | undefined }): { username?: TextMatch; email?: TextMatch } {
  const filters: { username?: TextMatch; email?: TextMatch } = {};
  for (const [key, term] of parseQ(query.q)) {
    if (key !== 'username' && key !== 'email') throw badRequest(`q: unknown key "${key}"; users can be filtered by username and email`);
    if (term.kind !== 'exact' && term.kind !== 'fuzzy') throw badRequest(`q: "${key}" takes a single value (k=v or k=~v)`);
    filters[key] = { kind: term.kind, value: term.value };
  }
  // Harbor also takes username= and email= as plain query parameters, matched fuzzily.
  if (query.username !== undefined && query.username !== '') filters.username = { kind: 'fuzzy', value: query.username };
  if (query.email !== undefined && query.email !== '') filters.email = { kind: 'fuzzy', value: query.email };
  return filters;
}

function isSelf(request: FastifyRequest, id: number): boolean {
  return request.subject.kind === 'user' && request.subject.id === id;
}

export async function userRoutes(api: FastifyInstance, deps: UserRoutesDeps): Promise<void> {
  const { users, access, authenticator } = deps;

  /** The caller is the user, or holds `action` on users system-wide. */
  const requireSelfOr = (request: FastifyRequest, id: number, action: Action) => {
    access.requireLogin(request);
    if (!isSelf(request, id)) access.requireSystem(request, 'user', action);
  };

  api.get(
    '/users',
    {
      schema: {
        tags: TAGS,
        operationId: 'listUsers',
        summary: 'List users (system admins)',
        querystring: ListQuery,
        response: { 200: Type.Array(UserResp) },
      },
    },
    async (request, reply) => {
      access.requireSystem(request, 'user', 'list');
      const query = request.query as { q?: string; sort?: string; username?: string; email?: string; page?: string; page_size?: string };
      const paging: PageParams = pageParams(query);
      const { total, users: page } = await users.list({ ...textFilters(query), sort: parseSort(query.sort), offset: paging.offset, limit: paging.pageSize });
      setPageHeaders(request, reply, paging, total);
      return page.map(toUserResp);
    },
  );

  api.post(
    '/users',
    {
      schema: { tags: TAGS, operationId: 'createUser', summary: 'Create a local user (system admins)', body: UserCreationReq },
    },
    async (request, reply) => {
      access.requireSystem(request, 'user', 'create');
      const body = request.body as { username: string; password: string; email?: string; realname?: string; comment?: string };
      const user = await users.create(body);
      return reply.code(201).header('location', `/api/v2.0/users/${user.id}`).send();
    },
  );

  api.get(
    '/users/current',
    { schema: { tags: TAGS, operationId: 'getCurrentUserInfo', summary: 'The logged-in user', response: { 200: UserResp } } },
    async (request) => {
      const subject = access.requireUser(request);
      return toUserResp(await users.require(subject.id));
    },
  );

  api.get(
    '/users/search',
    {
      schema: {
        tags: TAGS,
        operationId: 'searchUsers',
        summary: 'Find users by part of their name (any logged-in caller)',
        querystring: SearchQuery,
        response: { 200: Type.Array(Type.Object({ user_id: Type.Integer(), username: Type.String() })) },
      },
    },
    async (request, reply) => {
      access.requireLogin(request);
      const query = request.query as { username: string; page?: string; page_size?: string };
      const paging = pageParams(query);
      const { total, users: page } = await users.list({ username: { kind: 'fuzzy', value: query.username }, offset: paging.offset, limit: paging.pageSize });
      setPageHeaders(request, reply, paging, total);
      return page.map((u) => ({ user_id: u.id, username: u.username }));
    },
  );

  api.get(
    '/users/current/permissions',
    {
      schema: {
        tags: TAGS,
        operationId: 'getCurrentUserPermissions',
        summary: 'What the caller may do in a scope (/system or /project/{id})',
        querystring: PermissionsQuery,
        response: { 200: Type.Array(Permission) },
      },
    },
    async (request) => {
      const subject = access.requireLogin(request);
      const { scope, relative = false } = request.query as { scope: string; relative?: boolean };
      const normalised = scope.replace(/\/+$/, '');
      if (normalised === '/system') {
        return SYSTEM_POLICIES.flatMap(([resource, actions]) =>
          actions.filter((action) => access.canSystem(subject, resource, action)).map((action) => ({ resource: relative ? resource : `/system/${resource}`, action })),
        );
      }
      const match = /^\/project\/([0-9]{1,15})$/.exec(normalised);
      if (!match) throw badRequest(`scope must be /system or /project/{project_id}, got "${scope}"`);
      const projectId = Number(match[1]);
      let project: Awaited<ReturnType<AccessControl['requireProject']>>;
      try {
        project = await access.requireProject(request, projectId, 'project', 'read');
      } catch (err) {
        // A project the caller cannot see (or that does not exist) is one where they hold nothing.
        if (err instanceof ApiError && err.code === 'NOT_FOUND') return [];
        throw err;
      }
      const held: Array<{ resource: string; action: string }> = [];
      for (const { resource, action } of projectPermissions()) {
        if (await access.can(subject, project, resource, action)) held.push({ resource: relative ? resource : `/project/${project.id}/${resource}`, action });
      }
      return held;
    },
  );

  api.get(
    '/users/:user_id',
    { schema: { tags: TAGS, operationId: 'getUser', summary: 'A user (yourself, or anyone for system admins)', params: UserId, response: { 200: UserResp } } },
    async (request) => {
      const { user_id: id } = request.params as { user_id: number };
      requireSelfOr(request, id, 'read');
      return toUserResp(await users.require(id));
    },
  );

  api.put(
    '/users/:user_id',
    {
      schema: { tags: TAGS, operationId: 'updateUserProfile', summary: "Update a user's email, realname and comment", params: UserId, body: UserProfile },
    },
    async (request, reply) => {
      const { user_id: id } = request.params as { user_id: number };
      requireSelfOr(request, id, 'update');
      await users.updateProfile(id, request.body as { email?: string; realname?: string; comment?: string });
      return reply.send();
    },
  );

  api.delete(
    '/users/:user_id',
    { schema: { tags: TAGS, operationId: 'deleteUser', summary: 'Delete a user (system admins; not yourself, not admin, not the last system admin)', params: UserId } },
    async (request, reply) => {
      const { user_id: id } = request.params as { user_id: number };
      access.requireSystem(request, 'user', 'delete');
      if (isSelf(request, id)) throw new ApiError('FORBIDDEN', 'you cannot delete yourself');
      await users.delete(id);
      return reply.send();
    },
  );

  api.put(
    '/users/:user_id/sysadmin',
    {
      schema: { tags: TAGS, operationId: 'setUserSysAdmin', summary: 'Grant or remove the system admin flag (system admins)', params: UserId, body: SysAdminFlag },
    },
    async (request, reply) => {
      const { user_id: id } = request.params as { user_id: number };
      access.requireSystem(request, 'user', 'update');
      await users.setSysadmin(id, (request.body as { sysadmin_flag: boolean }).sysadmin_flag);
      return reply.send();
    },
  );

  api.put(
    '/users/:user_id/password',
    {
      schema: {
        tags: TAGS,
        operationId: 'updateUserPassword',
        summary: 'Change your password (with the current one), or reset anyone’s (system admins)',
        params: UserId,
        body: PasswordReq,
      },
    },
    async (request, reply) => {
      const { user_id: id } = request.params as { user_id: number };
      requireSelfOr(request, id, 'update');
      const body = request.body as { old_password?: string; new_password: string };
      if (isSelf(request, id)) {
        if (body.old_password === undefined || body.old_password === '') throw badRequest('old_password is required to change your own password');
        // Through the authenticator, so guessing the current password is rate-limited like a login.
        try {
          await authenticator.login(request.subject.kind === 'user' ? request.subject.name : '', body.old_password, request.ip, loginClientOf(request));
        } catch (err) {
          if (err instanceof ApiError && err.code === 'UNAUTHORIZED') throw new ApiError('FORBIDDEN', 'the current password is incorrect');
          throw err;
        }
      }
      await users.setPassword(id, body.new_password);
      // Whoever knew the old password is logged out everywhere, except in the session that changed it.
      const keep = isSelf(request, id) && request.authVia === 'session' ? readSessionCookie(request.headers.cookie) : undefined;
      await deps.sessions?.destroyAllOf(id, keep);
      return reply.send();
    },
  );
}
