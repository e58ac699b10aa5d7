/** Harbor's quota API: /api/v2.0/quotas…. One resource, `storage`, in bytes (-1 unlimited). */
import type { FastifyInstance } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl } from '../iam/access.ts';
import { notFound, pageParams, setPageHeaders } from '../platform/http/api.ts';
import { QuotaSchema, quotaJson } from './model.ts';
import { parseSort } from './params.ts';
import type { ProjectService } from './service.ts';
import type { QuotaSortKey } from './store.ts';

const QUOTA_SORT_KEYS: readonly QuotaSortKey[] = ['id', 'creation_time', 'update_time', 'hard.storage', 'used.storage'];

const ListQuery = Type.Object({
  reference: Type.Optional(Type.String({ description: 'Only "project" exists.' })),
  reference_id: Type.Optional(Type.String({ description: 'The project id.' })),
  sort: Type.Optional(Type.String({ description: `Comma-separated keys, "-" for descending: ${QUOTA_SORT_KEYS.join(', ')}.` })),
  page: Type.Optional(Type.Integer({ minimum: 1, default: 1 })),
  page_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10 })),
});

const IdParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });

const UpdateBody = Type.Object(
  {
    hard: Type.Object(
      { storage: Type.Integer({ minimum: -1, description: 'Bytes; -1 unlimited. It may be below current usage: further pushes are then refused.' }) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export async function quotaRoutes(api: FastifyInstance, deps: { readonly projects: ProjectService; readonly access: AccessControl }): Promise<void> {
  const { access } = deps;
  const quotas = deps.projects.quotas;

  api.get(
    '/quotas',
    {
      schema: {
        tags: ['quota'],
        operationId: 'listQuotas',
        summary: 'Storage quotas of all projects (system admins).',
        querystring: ListQuery,
        response: { 200: Type.Array(QuotaSchema) },
      },
    },
    async (request, reply) => {
      access.requireSystem(request, 'quota', 'list');
      const query = request.query as Static<typeof ListQuery>;
      const page = pageParams(query);
      const { items, total } = await quotas.list({
        ...(query.reference !== undefined ? { reference: query.reference } : {}),
        ...(query.reference_id !== undefined ? { referenceId: query.reference_id } : {}),
        sort: parseSort(query.sort, QUOTA_SORT_KEYS),
        page: { offset: page.offset, limit: page.pageSize },
      });
      setPageHeaders(request, reply, page, total);
      return items.map(quotaJson);
    },
  );

  api.get(
    '/quotas/:id',
    {
      schema: {
        tags: ['quota'],
        operationId: 'getQuota',
        summary: "A project's storage quota (system admins, and those who may read the project's quota).",
        params: IdParams,
        response: { 200: QuotaSchema },
      },
    },
    async (request) => {
      const { id } = request.params as Static<typeof IdParams>;
      const quota = await quotas.find(id);
      if (!access.canSystem(request.subject, 'quota', 'read')) {
        if (!quota) {
          access.requireLogin(request);
          throw notFound(`quota ${id} not found`);
        }
        await access.requireProject(request, quota.projectId, 'quota', 'read');
      }
      if (!quota) throw notFound(`quota ${id} not found`);
      return quotaJson(quota);
    },
  );

  api.put(
    '/quotas/:id',
    {
      schema: {
        tags: ['quota'],
        operationId: 'updateQuota',
        summary: 'Set the hard storage limit of a quota (system admins).',
        params: IdParams,
        body: UpdateBody,
        response: { 200: Type.Null({ description: 'Updated.' }) },
      },
    },
    async (request, reply) => {
      access.requireSystem(request, 'quota', 'update');
      const { id } = request.params as Static<typeof IdParams>;
      await quotas.setHard(id, (request.body as Static<typeof UpdateBody>).hard.storage);
      return reply.code(200).send();
    },
  );
}
