/**
 * Request parameters shared by the project, member and quota routes: the `{project_name_or_id}`
 * path parameter (with Harbor's X-Is-Resource-Name header) and `sort=`.
 */
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AccessControl, ProjectRef } from '../iam/access.ts';
import type { Action, ProjectResource } from '../iam/rbac.ts';
import { ApiError, badRequest } from '../platform/http/api.ts';
import type { ProjectService } from './service.ts';
import type { Sort } from './store.ts';

export const ProjectParams = Type.Object({
  project_name_or_id: Type.String({ minLength: 1, description: 'The project name, or its id when all digits (unless X-Is-Resource-Name: true).' }),
});

export const IsResourceNameHeader = Type.Object({
  'x-is-resource-name': Type.Optional(Type.String({ description: 'true: {project_name_or_id} is a name even when it is all digits.' })),
});

const TRUE = /^(?:true|t|1)$/i;

export function headerIsTrue(request: FastifyRequest, name: string): boolean {
  const value = request.headers[name];
  return typeof value === 'string' && TRUE.test(value.trim());
}

/**
 * The project the path names, if the caller may do `action` on `resource` in it (AccessControl
 * decides: 404 when the caller may not even see it, 401 anonymous, 403). With X-Is-Resource-Name
 * the parameter is a name even when it is all digits.
 */
export async function requireProjectParam(
  request: FastifyRequest,
  deps: { readonly projects: ProjectService; readonly access: AccessControl },
  nameOrId: string,
  resource: ProjectResource,
  action: Action,
): Promise<ProjectRef> {
  if (!headerIsTrue(request, 'x-is-resource-name') || !/^[0-9]+$/.test(nameOrId)) return deps.access.requireProject(request, nameOrId, resource, action);
  const project = await deps.projects.findByName(nameOrId);
  if (!project) throw new ApiError('NOT_FOUND', `project ${nameOrId} not found`);
  try {
    return await deps.access.requireProject(request, project.id, resource, action);
  } catch (err) {
    // Name the project as the caller did: its id must not leak when it is hidden.
    if (err instanceof ApiError && err.code === 'NOT_FOUND') throw new ApiError('NOT_FOUND', `project ${nameOrId} not found`);
    throw err;
  }
}

/** Harbor's `sort=key1,-key2` over the allowed keys, or a 400. */
export function parseSort<K extends string>(value: string | undefined, allowed: readonly K[]): Sort<K>[] {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((part) => {
    const trimmed = part.trim();
    const desc = trimmed.startsWith('-');
    const key = desc ? trimmed.slice(1) : trimmed;
    if (!(allowed as readonly string[]).includes(key)) throw badRequest(`sort: unknown key "${key}"; sortable: ${allowed.join(', ')}`);
    return { key: key as K, desc };
  });
}
