/** Harbor's project member API: /api/v2.0/projects/{project_name_or_id}/members…. */
import type { FastifyInstance } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl } from '../iam/access.ts';
import { pageParams, setPageHeaders } from '../platform/http/api.ts';
import { MemberSchema, memberJson } from './model.ts';
import { IsResourceNameHeader, ProjectParams, requireProjectParam } from './params.ts';
import type { ProjectService } from './service.ts';

const RoleId = Type.Integer({ minimum: 1, maximum: 5, description: '1 project admin, 2 developer, 3 guest, 4 maintainer, 5 limited guest.' });

const MemberCreateBody = Type.Object(
  {
    role_id: RoleId,
    member_user: Type.Optional(
      Type.Object(
        { user_id: Type.Optional(Type.Integer({ minimum: 1 })), username: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })) },
        { additionalProperties: false, description: 'The user, by id or name.' },
      ),
    ),
    member_group: Type.Optional(Type.Object({}, { description: 'Not supported yet.' })),
  },
  { additionalProperties: false },
);

const RoleBody = Type.Object({ role_id: RoleId }, { additionalProperties: false });

const MemberParams = Type.Object({ project_name_or_id: Type.String({ minLength: 1 }), mid: Type.Integer({ minimum: 1 }) });

const ListQuery = Type.Object({
  entityname: Type.Optional(Type.String({ description: 'Part of the member name.' })),
  page: Type.Optional(Type.Integer({ minimum: 1, default: 1 })),
  page_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10 })),
});

export async function memberRoutes(api: FastifyInstance, deps: { readonly projects: ProjectService; readonly access: AccessControl }): Promise<void> {
  const members = deps.projects.members;
  const headers = IsResourceNameHeader;

  api.get(
    '/projects/:project_name_or_id/members',
    {
      schema: {
        tags: ['member'],
        operationId: 'listProjectMembers',
        summary: 'Members of the project, by name.',
        params: ProjectParams,
        headers,
        querystring: ListQuery,
        response: { 200: Type.Array(MemberSchema) },
      },
    },
    async (request, reply) => {
      const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
      const query = request.query as Static<typeof ListQuery>;
      const project = await requireProjectParam(request, deps, project_name_or_id, 'member', 'list');
      const page = pageParams(query);
      const { items, total } = await members.list(project, query.entityname, { offset: page.offset, limit: page.pageSize });
      setPageHeaders(request, reply, page, total);
      return items.map(memberJson);
    },
  );

  api.post(
    '/projects/:project_name_or_id/members',
    {
      schema: {
        tags: ['member'],
        operationId: 'createProjectMember',
        summary: 'Add a user to the project with a role.',
        params: ProjectParams,
        headers,
        body: MemberCreateBody,
        response: { 201: Type.Null({ description: 'Added; Location names the member.' }) },
      },
    },
    async (request, reply) => {
      const { project_name_or_id } = request.params as Static<typeof ProjectParams>;
      const project = await requireProjectParam(request, deps, project_name_or_id, 'member', 'create');
      const id = await members.add(project, request.body as Static<typeof MemberCreateBody>);
      return reply.code(201).header('location', `/api/v2.0/projects/${project.id}/members/${id}`).send();
    },
  );

  api.get(
    '/projects/:project_name_or_id/members/:mid',
    { schema: { tags: ['member'], operationId: 'getProjectMember', summary: 'One member.', params: MemberParams, headers, response: { 200: MemberSchema } } },
    async (request) => {
      const { project_name_or_id, mid } = request.params as Static<typeof MemberParams>;
      const project = await requireProjectParam(request, deps, project_name_or_id, 'member', 'read');
      return memberJson(await members.get(project, mid));
    },
  );

  api.put(
    '/projects/:project_name_or_id/members/:mid',
    {
      schema: {
        tags: ['member'],
        operationId: 'updateProjectMember',
        summary: "Change a member's role.",
        params: MemberParams,
        headers,
        body: RoleBody,
        response: { 200: Type.Null({ description: 'Updated.' }) },
      },
    },
    async (request, reply) => {
      const { project_name_or_id, mid } = request.params as Static<typeof MemberParams>;
      const project = await requireProjectParam(request, deps, project_name_or_id, 'member', 'update');
      await members.updateRole(project, mid, (request.body as Static<typeof RoleBody>).role_id);
      return reply.code(200).send();
    },
  );

  api.delete(
    '/projects/:project_name_or_id/members/:mid',
    {
      schema: {
        tags: ['member'],
        operationId: 'deleteProjectMember',
        summary: 'Remove a member from the project.',
        params: MemberParams,
        headers,
        response: { 200: Type.Null({ description: 'Removed.' }) },
      },
    },
    async (request, reply) => {
      const { project_name_or_id, mid } = request.params as Static<typeof MemberParams>;
      const project = await requireProjectParam(request, deps, project_name_or_id, 'member', 'delete');
      await members.remove(project, mid);
      return reply.code(200).send();
    },
  );
}
