/**
 * Harbor's project and project-metadata API (/api/v2.0/projects…), and the member and quota
 * routes of this capability. Every handler authorises through AccessControl before acting.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl } from '../iam/access.ts';
import type { Subject } from '../iam/rbac.ts';
import { ApiError, badRequest, notFound, pageParams, parseQ, setPageHeaders } from '../platform/http/api.ts';
import { memberRoutes } from './member-routes.ts';
import { MetadataSchema, ProjectSchema, projectJson, SummarySchema, summaryJson } from './model.ts';
import { headerIsTrue, IsResourceNameHeader, ProjectParams, parseSort, requireProjectParam } from './params.ts';
import { quotaRoutes } from './quota-routes.ts';
import { PROJECT_NAME_MAX, type ProjectActor, type ProjectService } from './service.ts';
import type { ProjectFilter, ProjectSortKey, TextMatch, Visibility } from './store.ts';

export interface ProjectRoutesDeps {
  readonly projects: ProjectService;
  readonly access: AccessControl;
  /** Who may create projects (config auth.projectCreation). */
  readonly creation: 'everyone' | 'adminonly';
}

const PROJECT_SORT_KEYS: readonly ProjectSortKey[] = ['name', 'creation_time', 'update_time', 'project_id'];

const CveAllowlist = Type.Object(
  {
    id: Type.Optional(Type.Integer()),
    project_id: Type.Optional(Type.Integer()),
    items: Type.Optional(Type.Array(Type.Object({ cve_id: Type.String() }, { additionalProperties: false }))),
    expires_at: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
    creation_time: Type.Optional(Type.String()),
    update_time: Type.Optional(Type.String()),
  },
  { additionalProperties: false, description: 'Accepted empty only: per-project CVE allowlists come with vulnerability scanning.' },
);

const projectRequestFields = {
  public: Type.Optional(Type.Boolean({ description: 'Deprecated by Harbor in favour of metadata.public; both must agree when both are given.' })),
  metadata: Type.Optional(MetadataSchema),
  storage_limit: Type.Optional(Type.Integer({ description: 'Storage quota in bytes (-1 unlimited); absent or 0 means the configured default. System admins only.' })),
  registry_id: Type.Optional(Type.Union([Type.Integer(), Type.Null()], { description: 'Proxy-cache projects are not supported: null or absent.' })),
  cve_allowlist: Type.Optional(CveAllowlist),
};

const ProjectCreateBody = Type.Object(
  { project_name: Type.String({ minLength: 1, maxLength: PROJECT_NAME_MAX, description: 'Lowercase letters and digits, separated by single ".", "_" or "-".' }), ...projectRequestFields },
  { additionalProperties: false },
);
const ProjectUpdateBody = Type.Object(
  { project_name: Type.Optional(Type.String({ description: 'Must be the current name: projects cannot be renamed.' })), ...projectRequestFields },
  { additionalProperties: false },
);

const ListQuery = Type.Object({
  q: Type.Optional(Type.String({ description: 'Harbor query: name (exact, =~fuzzy or {a b}), public, owner, project_id.' })),
  page: Type.Optional(Type.Integer({ minimum: 1, default: 1 })),
  page_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10 })),
  sort: Type.Optional(Type.String({ description: `Comma-separated keys, "-" for descending: ${PROJECT_SORT_KEYS.join(', ')}.` })),
  name: Type.Optional(Type.String({ description: 'Part of the project name (fuzzy, as in Harbor).' })),
  public: Type.Optional(Type.Boolean()),
  owner: Type.Optional(Type.String({ description: 'Username of the owner.' })),
  with_detail: Type.Optional(Type.Boolean({ description: 'Accepted for compatibility; details are always included.' })),
});

const DeletableSchema = Type.Object({ deletable: Type.Boolean(), message: Type.String() });
const MetadataBody = Type.Record(Type.String(), Type.String(), { description: 'Setting name → string value.' });
const MetaParams = Type.Object({ project_name_or_id: Type.String({ minLength: 1 }), meta_name: Type.String({ minLength: 1 }) });
const Empty = (description: string) => Type.Null({ description });

type Caller = Exclude<Subject, { kind: 'anonymous' }>;

export async function projectRoutes(api: FastifyInstance, deps: ProjectRoutesDeps): Promise<void> {
  const { projects, access } = deps;
  const project = (request: FastifyRequest, nameOrId: string, resource: Parameters<AccessControl['requireProject']>[2], action: Parameters<AccessControl['requireProject']>[3]) =>
    requireProjectParam(request, deps, nameOrId, resource, action);
  const actor = (subject: Caller): ProjectActor => ({ subject, mayUpdateQuota: access.canSystem(subject, 'quota', 'update') });
  const viewerUserId = (subject: Subject) => (subject.kind === 'user' ? subject.id : undefined);

  /** Which projects a listing shows the caller. */
  function visibilityOf(subject: Subject): Visibility {
    if (access.canSystem(subject, 'project', 'list')) return { kind: 'all' };
    switch (subject.kind) {
      case 'anonymous':
        return { kind: 'public' };
      case 'user':
        return { kind: 'member', userId: subject.id };
      case 'robot': {
        // As Harbor: a robot sees public projects and those its permissions name; "*" covers all.
        const names = subject.access.filter((a) => a.kind === 'project').map((a) => a.namespace);
        return names.includes('*') ? { kind: 'all' } : { kind: 'names', names: [...new Set(names)] };
      }
    }
  }

  api.head(
    '/projects',
    {
      schema: {
        tags: ['project'],
        operationId: 'headProject',
        summary: 'Whether a project of this name exists (200) or not (404).',
        querystring: Type.Object({ project_name: Type.String({ minLength: 1 }) }),
        response: { 200: Empty('The project exists.') },
      },
    },
    async (request, reply) => {
      const { project_name: name } = request.query as { project_name: string };
      const found = await projects.findByName(name);
      if (!found) throw notFound(`project ${name} not found`);
      // A visitor who may read the project is told; a logged-in one is told anyway, since creating
      // it would answer 409. Anonymous visitors learn nothing about private projects.
      if (!(await access.can(request.subject, found, 'project', 'read'))) access.requireLogin(request);
      return reply.code(200).send();
    },
  );

  api.post(
    '/projects',
    {
      schema: {
        tags: ['project'],
        operationId: 'createProject',
        summary: 'Create a project; the creator becomes its Project Admin.',
        body: ProjectCreateBody,
        headers: Type.Object({ 'x-resource-name-in-location': Type.Optional(Type.String()) }),
        response: { 201: Empty('Created; Location names the new project.') },
      },
    },
    async (request, reply) => {
      const subject = access.requireLogin(request);
      if (subject.kind === 'robot' || deps.creation === 'adminonly') {
        // Robots need the system permission project:create; with adminonly, users must be system admins.
        if (!access.canSystem(subject, 'project', 'create')) {
          throw new ApiError('FORBIDDEN', subject.kind === 'robot' ? 'this robot account may not create projects' : 'only system admins may create projects');
        }
      }
      const body = request.body as Static<typeof ProjectCreateBody>;
      const created = await projects.create(body, actor(subject));
      const where = headerIsTrue(request, 'x-resource-name-in-location') ? created.name : String(created.id);
      return reply.code(201).header('location', `/api/v2.0/projects/${where}`).send();
    },
  );

  api.get(
    '/projects',
    {
      schema: {
        tags: ['project'],
        operationId: 'listProjects',
        summary: 'Projects the caller may see: public ones and those it is a member of (all for system admins).',
        querystring: ListQuery,
        response: { 200: Type.Array(ProjectSchema) },
      },
    },
    async (request, reply) => {
      const query = request.query as Static<typeof ListQuery>;
      const page = pageParams(query);
      const filter = listFilter(query, visibilityOf(request.subject));
      const sort = parseSort(query.sort, PROJECT_SORT_KEYS);
      const { items, total } = await projects.list({ filter, sort, page: { offset: page.offset, limit: page.pageSize }, viewerUserId: viewerUserId(request.subject) });
      setPageHeaders(request, reply, page, total);
      return items.map(projectJson);
    },
  );

  const withProject = { params: ProjectParams, headers: IsResourceNameHeader };

  api.get(
    '/projects/:project_name_or_id',
    { schema: { tags: ['project'], operationId: 'getProject', summary: 'A project by name or id.', ...withProject, response: { 200: ProjectSchema } } },
    async (request) => {
      const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
      const found = await project(request, project_name_or_id, 'project', 'read');
      return projectJson(await projects.get(found, viewerUserId(request.subject)));
    },
  );

  api.put(
    '/projects/:project_name_or_id',
    {
      schema: {
        tags: ['project'],
        operationId: 'updateProject',
        summary: 'Update the public flag and metadata (keys given are set, others kept).',
        ...withProject,
        body: ProjectUpdateBody,
        response: { 200: Empty('Updated.') },
      },
    },
    async (request, reply) => {
      const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
      const found = await project(request, project_name_or_id, 'project', 'update');
      await projects.update(found, request.body as Static<typeof ProjectUpdateBody>, actor(access.requireLogin(request)));
      return reply.code(200).send();
    },
  );

  api.delete(
    '/projects/:project_name_or_id',
    {
      schema: {
        tags: ['project'],
        operationId: 'deleteProject',
        summary: 'Delete a project with its members, robot accounts and quota; 412 while it holds repositories.',
        ...withProject,
        response: { 200: Empty('Deleted.') },
      },
    },
    async (request, reply) => {
      const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
      const found = await project(request, project_name_or_id, 'project', 'delete');
      await projects.delete(found);
      return reply.code(200).send();
    },
  );

  api.get(
    '/projects/:project_name_or_id/_deletable',
    {
      schema: {
        tags: ['project'],
        operationId: 'getProjectDeletable',
        summary: 'Whether the project can be deleted (it holds no repositories).',
        ...withProject,
        response: { 200: DeletableSchema },
      },
    },
    async (request) => {
      const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
      return projects.deletable(await project(request, project_name_or_id, 'project', 'delete'));
    },
  );

  api.get(
    '/projects/:project_name_or_id/summary',
    {
      schema: {
        tags: ['project'],
        operationId: 'getProjectSummary',
        summary: 'Repository count, members per role (for those who may list members) and quota (for those who may read it).',
        ...withProject,
        response: { 200: SummarySchema },
      },
    },
    async (request) => {
      const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
      const found = await project(request, project_name_or_id, 'project', 'read');
      const include = {
        members: await access.can(request.subject, found, 'member', 'list'),
        quota: await access.can(request.subject, found, 'quota', 'read'),
      };
      return summaryJson(await projects.summary(found, include));
    },
  );

  // ── metadata ────────────────────────────────────────────────────────────
  // Harbor's paths end in a slash for the collection; both spellings are served.

  for (const path of ['/projects/:project_name_or_id/metadatas/', '/projects/:project_name_or_id/metadatas']) {
    const hide = path.endsWith('s');
    api.get(
      path,
      {
        schema: {
          tags: ['projectMetadata'],
          operationId: 'listProjectMetadatas',
          summary: "The project's settings.",
          ...withProject,
          response: { 200: MetadataSchema },
          ...(hide ? { hide: true } : {}),
        },
      },
      async (request) => {
        const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
        // Harbor checks metadata:list, which its matrix grants as metadata:read.
        return projects.metadata(await project(request, project_name_or_id, 'metadata', 'read'));
      },
    );

    api.post(
      path,
      {
        schema: {
          tags: ['projectMetadata'],
          operationId: 'addProjectMetadatas',
          summary: 'Add settings the project does not have yet (409 for one it has: use PUT).',
          ...withProject,
          body: MetadataBody,
          response: { 200: Empty('Added.') },
          ...(hide ? { hide: true } : {}),
        },
      },
      async (request, reply) => {
        const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
        await projects.addMetadata(await project(request, project_name_or_id, 'metadata', 'create'), request.body as Record<string, string>);
        return reply.code(200).send();
      },
    );
  }

  const withMeta = { params: MetaParams, headers: IsResourceNameHeader };

  api.get(
    '/projects/:project_name_or_id/metadatas/:meta_name',
    { schema: { tags: ['projectMetadata'], operationId: 'getProjectMetadata', summary: 'One setting, as {name: value}.', ...withMeta, response: { 200: MetadataBody } } },
    async (request) => {
      const { project_name_or_id, meta_name } = request.params as Static<typeof MetaParams>;
      const all = await projects.metadata(await project(request, project_name_or_id, 'metadata', 'read'));
      const value = all[meta_name];
      if (value === undefined) throw notFound(`metadata ${meta_name} is not set for project ${project_name_or_id}`);
      return { [meta_name]: value };
    },
  );

  api.put(
    '/projects/:project_name_or_id/metadatas/:meta_name',
    {
      schema: {
        tags: ['projectMetadata'],
        operationId: 'updateProjectMetadata',
        summary: 'Change one setting; the body is {meta_name: value}.',
        ...withMeta,
        body: MetadataBody,
        response: { 200: Empty('Updated.') },
      },
    },
    async (request, reply) => {
      const { project_name_or_id, meta_name } = request.params as Static<typeof MetaParams>;
      await projects.updateMetadata(await project(request, project_name_or_id, 'metadata', 'update'), meta_name, request.body as Record<string, string>);
      return reply.code(200).send();
    },
  );

  api.delete(
    '/projects/:project_name_or_id/metadatas/:meta_name',
    {
      schema: {
        tags: ['projectMetadata'],
        operationId: 'deleteProjectMetadata',
        summary: 'Remove one setting (public cannot be removed).',
        ...withMeta,
        response: { 200: Empty('Removed (or was not set).') },
      },
    },
    async (request, reply) => {
      const { project_name_or_id, meta_name } = request.params as Static<typeof MetaParams>;
      await projects.deleteMetadata(await project(request, project_name_or_id, 'metadata', 'delete'), meta_name);
      return reply.code(200).send();
    },
  );

  await memberRoutes(api, deps);
  await quotaRoutes(api, deps);
}

/** The listing filter from name/public/owner and q= (ANDed), within what the caller may see. */
function listFilter(query: Static<typeof ListQuery>, visibility: Visibility): ProjectFilter {
  const name: TextMatch[] = [];
  if (query.name !== undefined && query.name !== '') name.push({ kind: 'fuzzy', value: query.name });
  let isPublic = query.public;
  let owner = query.owner === '' ? undefined : query.owner;
  let ids: number[] | undefined;
  for (const [key, term] of parseQ(query.q)) {
    switch (key) {
      case 'name':
        if (term.kind === 'exact' || term.kind === 'fuzzy') name.push({ kind: term.kind, value: term.value });
        else if (term.kind === 'or') name.push({ kind: 'any', values: term.values });
        else throw badRequest('q: name takes a value, =~part or {a b}');
        break;
      case 'public': {
        if (term.kind !== 'exact' || !/^(?:true|false|1|0)$/.test(term.value)) throw badRequest('q: public takes true or false');
        const value = term.value === 'true' || term.value === '1';
        if (isPublic !== undefined && isPublic !== value) throw badRequest('public and q=public disagree');
        isPublic = value;
        break;
      }
      case 'owner':
        if (term.kind !== 'exact') throw badRequest('q: owner takes one exact username');
        if (owner !== undefined && owner !== term.value) throw badRequest('owner and q=owner disagree');
        owner = term.value;
        break;
      case 'project_id': {
        const values = term.kind === 'exact' ? [term.value] : term.kind === 'or' ? term.values : undefined;
        if (!values?.every((v) => /^[0-9]{1,15}$/.test(v))) throw badRequest('q: project_id takes a number or {1 2 3}');
        ids = values.map(Number);
        break;
      }
      default:
        throw badRequest(`q: unknown key "${key}"; projects filter on name, public, owner, project_id`);
    }
  }
  return {
    visibility,
    ...(name.length > 0 ? { name } : {}),
    ...(isPublic !== undefined ? { public: isPublic } : {}),
    ...(owner !== undefined ? { owner } : {}),
    ...(ids !== undefined ? { ids } : {}),
  };
}
