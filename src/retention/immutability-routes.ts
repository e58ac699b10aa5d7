/**
 * Harbor's immutable-tag-rule API (swagger group `immutable`):
 * GET|POST /projects/{project_name_or_id}/immutabletagrules and
 * PUT|DELETE /projects/{project_name_or_id}/immutabletagrules/{immutable_rule_id}.
 * Authorised on the project resource `immutable-tag` (list, create, update, delete: project
 * admins and maintainers), through AccessControl.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import type { AccessControl, ProjectRef } from '../iam/access.ts';
import type { Action } from '../iam/rbac.ts';
import { ApiError, badRequest, pageParams, setPageHeaders } from '../platform/http/api.ts';
import { IMMUTABLE_ACTION, IMMUTABLE_TEMPLATE, type ImmutabilityService, type ImmutableRuleInput, MAX_SELECTORS } from './immutability-service.ts';
import type { ImmutableRuleSortKey } from './immutability-store.ts';
import { MAX_PATTERN_LENGTH, type Selector } from './selectors.ts';

export interface ImmutabilityRoutesDeps {
  readonly immutability: ImmutabilityService;
  readonly access: AccessControl;
  /** By name, even when the name is all digits (for X-Is-Resource-Name). */
  readonly projects: { findByName(name: string): Promise<ProjectRef | undefined> };
}

// ── schemas ───────────────────────────────────────────────────────────────

const SelectorFields = {
  kind: Type.Enum(['doublestar', 'regex'], { description: 'doublestar (Harbor) or regex (Berth: an anchored full match)' }),
  pattern: Type.String({ maxLength: MAX_PATTERN_LENGTH, description: 'An empty pattern matches everything' }),
  extras: Type.Optional(Type.Union([Type.String({ maxLength: 256 }), Type.Object({ untagged: Type.Optional(Type.Boolean()) }, { additionalProperties: false })])),
};
const TagSelector = Type.Object({ ...SelectorFields, decoration: Type.Enum(['matches', 'excludes']) }, { additionalProperties: false });
const RepositorySelector = Type.Object(
  { ...SelectorFields, decoration: Type.Enum(['repoMatches', 'repoExcludes'], { description: 'Matched against the repository path without the project' }) },
  { additionalProperties: false },
);

const RuleBody = Type.Object(
  {
    id: Type.Optional(Type.Integer({ description: 'Ignored on create; on update, must be the id of the path when given' })),
    project_id: Type.Optional(Type.Integer({ description: 'Ignored unless it names another project (400)' })),
    priority: Type.Optional(Type.Integer({ minimum: -1_000_000, maximum: 1_000_000 })),
    disabled: Type.Optional(Type.Boolean()),
    action: Type.Optional(Type.String({ description: `Only "${IMMUTABLE_ACTION}"` })),
    template: Type.Optional(Type.String({ description: `Only "${IMMUTABLE_TEMPLATE}"` })),
    params: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Unused by immutability rules; accepted for Harbor clients' })),
    tag_selectors: Type.Array(TagSelector, { minItems: 1, maxItems: MAX_SELECTORS }),
    scope_selectors: Type.Object({ repository: Type.Array(RepositorySelector, { minItems: 1, maxItems: MAX_SELECTORS }) }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
type RuleBody = Static<typeof RuleBody>;

const SelectorJson = Type.Object({ kind: Type.String(), decoration: Type.String(), pattern: Type.String(), extras: Type.Optional(Type.Unknown()) });
const RuleJson = Type.Object({
  id: Type.Integer(),
  project_id: Type.Integer(),
  priority: Type.Integer(),
  disabled: Type.Boolean(),
  action: Type.String(),
  template: Type.String(),
  params: Type.Record(Type.String(), Type.Unknown()),
  tag_selectors: Type.Array(SelectorJson),
  scope_selectors: Type.Object({ repository: Type.Array(SelectorJson) }),
});

const ErrorsJson = Type.Object({ errors: Type.Array(Type.Object({ code: Type.String(), message: Type.String() })) });
const errorResponses = { 400: ErrorsJson, 401: ErrorsJson, 403: ErrorsJson, 404: ErrorsJson, 409: ErrorsJson };

const ProjectParams = Type.Object({ project_name_or_id: Type.String({ minLength: 1, description: 'The project name, or its id when all digits (unless X-Is-Resource-Name: true)' }) });
const RuleParams = Type.Object({ ...ProjectParams.properties, immutable_rule_id: Type.String({ description: 'The rule id' }) });
const SORT_KEYS: readonly ImmutableRuleSortKey[] = ['id', 'priority'];
const ListQuery = Type.Object({
  page: Type.Optional(Type.String()),
  page_size: Type.Optional(Type.String()),
  sort: Type.Optional(Type.String({ description: `${SORT_KEYS.join(' or ')}, "-" before it for descending; id by default` })),
  q: Type.Optional(Type.String({ description: 'Accepted for Harbor clients; rules have nothing to filter on' })),
});
const Empty = Type.Null({ description: 'No body.' });

function ruleId(raw: string): number {
  if (!/^[0-9]{1,15}$/.test(raw)) throw badRequest(`immutable_rule_id must be a positive whole number, got "${raw}"`);
  return Number(raw);
}

function parseSort(value: string | undefined): Array<{ key: ImmutableRuleSortKey; desc: boolean }> {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((part) => {
    const trimmed = part.trim();
    const desc = trimmed.startsWith('-');
    const key = desc ? trimmed.slice(1) : trimmed;
    if (!(SORT_KEYS as readonly string[]).includes(key)) throw badRequest(`sort: unknown key "${key}"; rules sort by ${SORT_KEYS.join(', ')}`);
    return { key: key as ImmutableRuleSortKey, desc };
  });
}

function input(body: RuleBody, project: ProjectRef): ImmutableRuleInput {
  if (body.project_id !== undefined && body.project_id !== project.id) throw badRequest(`the body names project ${body.project_id}, the path project ${project.id}`);
  return {
    priority: body.priority,
    disabled: body.disabled,
    action: body.action,
    template: body.template,
    tag_selectors: body.tag_selectors as Selector[],
    scope_selectors: { repository: body.scope_selectors.repository as Selector[] },
  };
}

// ── routes ────────────────────────────────────────────────────────────────

export async function immutabilityRoutes(api: FastifyInstance, deps: ImmutabilityRoutesDeps): Promise<void> {
  const { immutability, access } = deps;
  const tags = ['immutable'];
  // Every operation needs a login (no role of an anonymous visitor holds immutable-tag): say so before judging the request.
  const onRequest = async (request: FastifyRequest) => {
    access.requireLogin(request);
  };

  /** The project of the path if the caller may do `action` on immutable-tag in it (Harbor's X-Is-Resource-Name honoured). */
  const project = async (request: FastifyRequest, nameOrId: string, action: Action): Promise<ProjectRef> => {
    const header = request.headers['x-is-resource-name'];
    if (typeof header !== 'string' || !/^(?:true|t|1)$/i.test(header.trim()) || !/^[0-9]+$/.test(nameOrId)) return access.requireProject(request, nameOrId, 'immutable-tag', action);
    const found = await deps.projects.findByName(nameOrId);
    if (!found) throw new ApiError('NOT_FOUND', `project ${nameOrId} not found`);
    try {
      return await access.requireProject(request, found.id, 'immutable-tag', action);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'NOT_FOUND') throw new ApiError('NOT_FOUND', `project ${nameOrId} not found`);
      throw err;
    }
  };

  api.get<{ Params: Static<typeof ProjectParams>; Querystring: Static<typeof ListQuery> }>(
    '/projects/:project_name_or_id/immutabletagrules',
    {
      onRequest,
      schema: {
        tags,
        operationId: 'ListImmuRules',
        summary: "The project's tag immutability rules",
        params: ProjectParams,
        querystring: ListQuery,
        response: { 200: Type.Array(RuleJson), ...errorResponses },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name_or_id, 'list');
      const page = pageParams(request.query);
      const { total, items } = await immutability.list(p.id, parseSort(request.query.sort), page.offset, page.pageSize);
      setPageHeaders(request, reply, page, total);
      return items;
    },
  );

  api.post<{ Params: Static<typeof ProjectParams>; Body: RuleBody }>(
    '/projects/:project_name_or_id/immutabletagrules',
    {
      onRequest,
      schema: {
        tags,
        operationId: 'CreateImmuRule',
        summary: `Adds a tag immutability rule to the project (at most 15 per project)`,
        params: ProjectParams,
        body: RuleBody,
        response: { 201: Empty, ...errorResponses },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name_or_id, 'create');
      const rule = await immutability.create(p, input(request.body, p));
      const path = request.url.split('?')[0]?.replace(/\/+$/, '');
      return reply.code(201).header('location', `${path}/${rule.id}`).send();
    },
  );

  api.put<{ Params: Static<typeof RuleParams>; Body: RuleBody }>(
    '/projects/:project_name_or_id/immutabletagrules/:immutable_rule_id',
    {
      onRequest,
      schema: {
        tags,
        operationId: 'UpdateImmuRule',
        summary: 'Replaces a tag immutability rule, or enables or disables it',
        params: RuleParams,
        body: RuleBody,
        response: { 200: Empty, ...errorResponses },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name_or_id, 'update');
      const id = ruleId(request.params.immutable_rule_id);
      if (request.body.id !== undefined && request.body.id !== id) throw badRequest(`the immutable_rule_id ${id} does not match the id ${request.body.id} in the body`);
      await immutability.update(p, id, input(request.body, p));
      return reply.code(200).send();
    },
  );

  api.delete<{ Params: Static<typeof RuleParams> }>(
    '/projects/:project_name_or_id/immutabletagrules/:immutable_rule_id',
    {
      onRequest,
      schema: { tags, operationId: 'DeleteImmuRule', summary: 'Deletes a tag immutability rule', params: RuleParams, response: { 200: Empty, ...errorResponses } },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name_or_id, 'delete');
      const id = ruleId(request.params.immutable_rule_id);
      await immutability.delete(p, id);
      return reply.code(200).send();
    },
  );
}
