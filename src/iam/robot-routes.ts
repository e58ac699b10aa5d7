/**
 * Harbor's robot API: /api/v2.0/robots (list, create), /robots/{robot_id} (get, update, refresh
 * the secret, delete) and /permissions (what a robot can be given). A robot's secret appears in
 * exactly two responses: the 201 that created it and the 200 of a refresh.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import { badRequest, exactValue, pageParams, parseQ, setPageHeaders } from '../platform/http/api.ts';
import { noteOperationProject } from '../platform/http/operation-events.ts';
import type { AccessControl } from './access.ts';
import {
  permissionCatalog,
  ROBOT_DESCRIPTION_MAX,
  ROBOT_NAME_MAX,
  ROBOT_SORT_FIELDS,
  type Robot,
  type RobotGuard,
  type RobotListQuery,
  type RobotService,
  type RobotSortField,
} from './robots.ts';

export interface RobotRoutesDeps {
  readonly robots: RobotService;
  readonly access: AccessControl;
}

/** The RobotGuard of a request: AccessControl's checks on the `robot` resource. */
export function robotGuard(access: AccessControl, request: FastifyRequest): RobotGuard {
  return {
    subject: request.subject,
    requireLogin: () => {
      access.requireLogin(request);
    },
    requireProject: async (nameOrId, action) => {
      const project = await access.requireProject(request, nameOrId, 'robot', action);
      // Robot operations are under /robots: this puts them in their project's log.
      noteOperationProject(request, project.name);
      return project;
    },
    requireSystem: (action) => access.requireSystem(request, 'robot', action),
  };
}

// ── schemas ───────────────────────────────────────────────────────────────

const Access = Type.Object(
  {
    resource: Type.String({ minLength: 1, maxLength: 64 }),
    action: Type.String({ minLength: 1, maxLength: 64 }),
    effect: Type.Optional(Type.String({ maxLength: 16, description: 'Only "allow".' })),
  },
  { additionalProperties: false },
);

const Permission = Type.Object(
  {
    kind: Type.Enum(['system', 'project'], { description: 'system (namespace "/") or project (namespace: a project name, or "*" for every project)' }),
    namespace: Type.String({ minLength: 1, maxLength: 255 }),
    access: Type.Array(Access, { minItems: 1, maxItems: 500 }),
  },
  { additionalProperties: false },
);

const RobotCreateBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: ROBOT_NAME_MAX, description: 'Lowercase letters and digits separated by single . _ or -' }),
    description: Type.Optional(Type.String({ maxLength: ROBOT_DESCRIPTION_MAX })),
    secret: Type.Optional(Type.String({ maxLength: 128, description: '8–128 characters with an uppercase letter, a lowercase letter and a digit; generated when absent' })),
    level: Type.Enum(['system', 'project']),
    disable: Type.Optional(Type.Boolean()),
    duration: Type.Optional(Type.Integer({ description: 'Days; -1 never expires; the configured default when absent' })),
    permissions: Type.Array(Permission, { minItems: 1, maxItems: 1000 }),
  },
  { additionalProperties: false },
);

/** Harbor's Robot as clients send it back: the read-only fields are accepted and ignored. */
const RobotUpdateBody = Type.Object(
  {
    id: Type.Optional(Type.Integer()),
    name: Type.Optional(Type.String({ maxLength: 1024 })),
    description: Type.Optional(Type.String({ maxLength: ROBOT_DESCRIPTION_MAX })),
    secret: Type.Optional(Type.Union([Type.String({ maxLength: 0 }), Type.Null()], { description: 'Ignored when empty; change the secret with PATCH' })),
    level: Type.Optional(Type.Enum(['system', 'project'])),
    duration: Type.Optional(Type.Integer()),
    editable: Type.Optional(Type.Boolean()),
    disable: Type.Optional(Type.Boolean()),
    expires_at: Type.Optional(Type.Integer()),
    permissions: Type.Optional(Type.Array(Permission, { minItems: 1, maxItems: 1000 })),
    creator_type: Type.Optional(Type.String()),
    creator_ref: Type.Optional(Type.Integer()),
    creation_time: Type.Optional(Type.String()),
    update_time: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const RobotSecBody = Type.Object(
  { secret: Type.Optional(Type.String({ maxLength: 128, description: 'A secret of your choosing; a random one is generated when absent' })) },
  { additionalProperties: false },
);

const RobotJson = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
  level: Type.String(),
  duration: Type.Integer(),
  editable: Type.Boolean(),
  disable: Type.Boolean(),
  expires_at: Type.Integer({ description: 'Epoch seconds; -1 never' }),
  permissions: Type.Array(
    Type.Object({
      kind: Type.String(),
      namespace: Type.String(),
      access: Type.Array(Type.Object({ resource: Type.String(), action: Type.String(), effect: Type.String() })),
    }),
  ),
  creator_type: Type.String(),
  creator_ref: Type.Integer(),
  creation_time: Type.String({ format: 'date-time' }),
  update_time: Type.String({ format: 'date-time' }),
});

const RobotCreated = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  secret: Type.String(),
  creation_time: Type.String({ format: 'date-time' }),
  expires_at: Type.Integer(),
});

const ErrorsJson = Type.Object({ errors: Type.Array(Type.Object({ code: Type.String(), message: Type.String() })) });
const errorResponses = { 400: ErrorsJson, 401: ErrorsJson, 403: ErrorsJson, 404: ErrorsJson, 409: ErrorsJson };

const RobotIdParams = Type.Object({ robot_id: Type.String({ description: 'The robot id' }) });

const ListQuery = Type.Object({
  q: Type.Optional(Type.String({ description: 'Level=system|project, ProjectID=<id> (project level), name=<name> or name=~<part>' })),
  sort: Type.Optional(Type.String({ description: `One of ${ROBOT_SORT_FIELDS.join(', ')}; "-" before it for descending` })),
  page: Type.Optional(Type.String()),
  page_size: Type.Optional(Type.String()),
});

type RobotCreateBody = Static<typeof RobotCreateBody>;
type RobotUpdateBody = Static<typeof RobotUpdateBody>;
type RobotSecBody = Static<typeof RobotSecBody>;
type ListQuery = Static<typeof ListQuery>;

// ── mapping ───────────────────────────────────────────────────────────────

function rfc3339(ms: number): string {
  return new Date(ms).toISOString();
}

function epochSeconds(ms: number): number {
  return ms === -1 ? -1 : Math.floor(ms / 1000);
}

/** Harbor's Robot; never the secret. */
export function robotJson(robot: Robot): Static<typeof RobotJson> {
  return {
    id: robot.id,
    name: robot.name,
    description: robot.description,
    level: robot.level,
    duration: robot.duration,
    editable: true,
    disable: robot.disabled,
    expires_at: epochSeconds(robot.expiresAt),
    permissions: robot.permissions.map((p) => ({ kind: p.kind, namespace: p.namespace, access: p.access.map((a) => ({ ...a })) })),
    creator_type: robot.creatorType,
    creator_ref: robot.creatorRef,
    creation_time: rfc3339(robot.createdAt),
    update_time: rfc3339(robot.updatedAt),
  };
}

function robotId(raw: string): number {
  if (!/^[0-9]{1,15}$/.test(raw)) throw badRequest(`robot_id must be a positive whole number, got "${raw}"`);
  return Number(raw);
}

/** Harbor's list filters: q=Level=…,ProjectID=…,name=… and sort=[-]field. */
function listQuery(query: ListQuery): Omit<RobotListQuery, 'offset' | 'limit'> {
  const terms = parseQ(query.q);
  for (const key of terms.keys()) {
    if (key !== 'Level' && key !== 'ProjectID' && key !== 'name') throw badRequest(`q: unknown key "${key}"; robots filter on Level, ProjectID and name`);
  }
  const projectText = exactValue(terms, 'ProjectID');
  const levelText = exactValue(terms, 'Level') ?? (projectText === undefined ? 'system' : 'project');
  if (levelText !== 'system' && levelText !== 'project') throw badRequest(`q: Level must be system or project, got "${levelText}"`);
  let projectId: number | undefined;
  if (projectText !== undefined) {
    if (levelText !== 'project') throw badRequest('q: ProjectID goes with Level=project');
    if (!/^[0-9]{1,15}$/.test(projectText)) throw badRequest(`q: ProjectID must be a project id (a whole number), got "${projectText}"`);
    projectId = Number(projectText);
  }
  const nameTerm = terms.get('name');
  let name: RobotListQuery['name'];
  if (nameTerm?.kind === 'exact' || nameTerm?.kind === 'fuzzy') name = { match: nameTerm.kind, value: nameTerm.value };
  else if (nameTerm) throw badRequest('q: name takes one value (name=x or name=~x)');
  let sort: RobotListQuery['sort'];
  if (query.sort !== undefined && query.sort !== '') {
    const descending = query.sort.startsWith('-');
    const field = descending ? query.sort.slice(1) : query.sort;
    if (!(ROBOT_SORT_FIELDS as readonly string[]).includes(field)) throw badRequest(`sort: robots sort by ${ROBOT_SORT_FIELDS.join(', ')}, got "${query.sort}"`);
    sort = { field: field as RobotSortField, descending };
  }
  return { level: levelText, ...(projectId !== undefined ? { projectId } : {}), ...(name ? { name } : {}), ...(sort ? { sort } : {}) };
}

// ── routes ────────────────────────────────────────────────────────────────

/** /api/v2.0/robots…, /api/v2.0/permissions. */
export async function robotRoutes(api: FastifyInstance, deps: RobotRoutesDeps): Promise<void> {
  const { robots, access } = deps;
  const tags = ['robot'];
  // Anonymous callers are told to log in before anything about their request is judged.
  const loggedIn = async (request: FastifyRequest) => {
    access.requireLogin(request);
  };

  api.get<{ Querystring: ListQuery }>(
    '/robots',
    {
      onRequest: loggedIn,
      schema: {
        tags,
        operationId: 'ListRobot',
        summary: 'List robot accounts: system robots, or the robots of one project (q=Level=project,ProjectID=<id>)',
        querystring: ListQuery,
        response: { 200: Type.Array(RobotJson), ...errorResponses },
      },
    },
    async (request, reply) => {
      const filter = listQuery(request.query);
      const page = pageParams(request.query);
      const { total, robots: items } = await robots.list(robotGuard(access, request), { ...filter, offset: page.offset, limit: page.pageSize });
      setPageHeaders(request, reply, page, total);
      return items.map(robotJson);
    },
  );

  api.post<{ Body: RobotCreateBody }>(
    '/robots',
    {
      onRequest: loggedIn,
      schema: {
        tags,
        operationId: 'CreateRobot',
        summary: 'Create a robot account; the secret is in this response only',
        body: RobotCreateBody,
        response: { 201: RobotCreated, ...errorResponses },
      },
    },
    async (request, reply) => {
      const { robot, secret } = await robots.create(robotGuard(access, request), request.body);
      reply.code(201).header('location', `/api/v2.0/robots/${robot.id}`);
      return { id: robot.id, name: robot.name, secret, creation_time: rfc3339(robot.createdAt), expires_at: epochSeconds(robot.expiresAt) };
    },
  );

  api.get<{ Params: Static<typeof RobotIdParams> }>(
    '/robots/:robot_id',
    {
      onRequest: loggedIn,
      schema: { tags, operationId: 'GetRobotByID', summary: 'Get a robot account', params: RobotIdParams, response: { 200: RobotJson, ...errorResponses } },
    },
    async (request) => robotJson(await robots.get(robotGuard(access, request), robotId(request.params.robot_id))),
  );

  api.put<{ Params: Static<typeof RobotIdParams>; Body: RobotUpdateBody }>(
    '/robots/:robot_id',
    {
      onRequest: loggedIn,
      schema: {
        tags,
        operationId: 'UpdateRobot',
        summary: 'Update the description, disable flag, duration or permissions of a robot account',
        params: RobotIdParams,
        body: RobotUpdateBody,
        response: { 200: RobotJson, ...errorResponses },
      },
    },
    async (request) => {
      const id = robotId(request.params.robot_id);
      const body = request.body;
      if (body.id !== undefined && body.id !== id) throw badRequest(`the body is robot ${body.id}, the path robot ${id}`);
      const robot = await robots.update(robotGuard(access, request), id, {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.level !== undefined ? { level: body.level } : {}),
        ...(body.description !== undefined ? { description: body.description } : {}),
        ...(body.disable !== undefined ? { disable: body.disable } : {}),
        ...(body.duration !== undefined ? { duration: body.duration } : {}),
        ...(body.permissions !== undefined ? { permissions: body.permissions } : {}),
      });
      return robotJson(robot);
    },
  );

  api.patch<{ Params: Static<typeof RobotIdParams>; Body: RobotSecBody | undefined }>(
    '/robots/:robot_id',
    {
      schema: {
        tags,
        operationId: 'RefreshSec',
        summary: 'Give a robot account a new secret (yours, or a generated one); it is in this response only',
        params: RobotIdParams,
        body: RobotSecBody,
        response: { 200: Type.Object({ secret: Type.String() }), ...errorResponses },
      },
      onRequest: loggedIn,
      // No body at all asks for a generated secret, as `{}` does.
      preValidation: async (request) => {
        if (request.body === undefined || request.body === null) request.body = {};
      },
    },
    async (request) => {
      const secret = await robots.refreshSecret(robotGuard(access, request), robotId(request.params.robot_id), request.body?.secret);
      return { secret };
    },
  );

  api.delete<{ Params: Static<typeof RobotIdParams> }>(
    '/robots/:robot_id',
    { onRequest: loggedIn, schema: { tags, operationId: 'DeleteRobot', summary: 'Delete a robot account', params: RobotIdParams, response: errorResponses } },
    async (request, reply) => {
      await robots.delete(robotGuard(access, request), robotId(request.params.robot_id));
      return reply.code(200).send();
    },
  );

  api.get(
    '/permissions',
    {
      schema: {
        tags: ['permissions'],
        operationId: 'GetPermissions',
        summary: 'The permissions a robot account can be given, system-wide and in a project',
        response: {
          200: Type.Object({
            system: Type.Array(Type.Object({ resource: Type.String(), action: Type.String() })),
            project: Type.Array(Type.Object({ resource: Type.String(), action: Type.String() })),
          }),
          401: ErrorsJson,
        },
      },
    },
    async (request) => {
      access.requireLogin(request);
      return permissionCatalog();
    },
  );
}
