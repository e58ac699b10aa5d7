/**
 * Harbor's JSON shapes for projects, members, quotas and summaries (swagger `Project`,
 * `ProjectMemberEntity`, `Quota`, `ProjectSummary`), as TypeBox schemas for the OpenAPI document
 * and response serialisation, and the functions that fill them.
 */
import { type Static, Type } from 'typebox';
import type { MemberView } from './members.ts';
import { ALL_METADATA_KEYS } from './metadata.ts';
import type { QuotaView } from './quotas.ts';
import type { ProjectSummary, ProjectView } from './service.ts';

/** RFC 3339 from epoch milliseconds, as Harbor's creation_time/update_time. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

const Time = Type.String({ format: 'date-time' });

/** The metadata map: string values only (booleans as "true"/"false"). */
export const MetadataSchema = Type.Object(Object.fromEntries(ALL_METADATA_KEYS.map((key) => [key, Type.Optional(Type.String())])), {
  additionalProperties: Type.String(),
  description: 'Project settings; every value is a string (booleans "true"/"false").',
});

export const ProjectSchema = Type.Object({
  project_id: Type.Integer(),
  owner_id: Type.Integer(),
  owner_name: Type.String(),
  name: Type.String(),
  registry_id: Type.Union([Type.Integer(), Type.Null()]),
  creation_time: Time,
  update_time: Time,
  deleted: Type.Boolean(),
  togglable: Type.Boolean(),
  current_user_role_id: Type.Integer({ description: "The caller's highest role in the project; 0 when not a member." }),
  current_user_role_ids: Type.Array(Type.Integer()),
  repo_count: Type.Integer(),
  metadata: MetadataSchema,
});
export type ProjectJson = Static<typeof ProjectSchema>;

/** Harbor's order of role strength (project admin > maintainer > developer > guest > limited guest). */
const ROLE_POWER: Record<number, number> = { 1: 50, 4: 40, 2: 30, 3: 20, 5: 10 };

export function highestRole(roles: readonly number[]): number {
  let best = 0;
  for (const role of roles) if ((ROLE_POWER[role] ?? 0) > (ROLE_POWER[best] ?? 0)) best = role;
  return best;
}

export function projectJson(p: ProjectView): ProjectJson {
  return {
    project_id: p.id,
    owner_id: p.ownerId ?? 0,
    owner_name: p.ownerName ?? '',
    name: p.name,
    registry_id: null,
    creation_time: iso(p.createdAt),
    update_time: iso(p.updatedAt),
    deleted: false,
    togglable: true,
    current_user_role_id: highestRole(p.roles),
    current_user_role_ids: [...p.roles].sort((a, b) => a - b),
    repo_count: p.repoCount,
    metadata: p.metadata,
  };
}

const Storage = Type.Object({ storage: Type.Integer() });

export const SummarySchema = Type.Object({
  repo_count: Type.Integer(),
  project_admin_count: Type.Optional(Type.Integer()),
  maintainer_count: Type.Optional(Type.Integer()),
  developer_count: Type.Optional(Type.Integer()),
  guest_count: Type.Optional(Type.Integer()),
  limited_guest_count: Type.Optional(Type.Integer()),
  quota: Type.Optional(Type.Object({ hard: Storage, used: Storage })),
});
export type SummaryJson = Static<typeof SummarySchema>;

export function summaryJson(s: ProjectSummary): SummaryJson {
  return {
    repo_count: s.repoCount,
    ...(s.members
      ? {
          project_admin_count: s.members.projectAdmin,
          maintainer_count: s.members.maintainer,
          developer_count: s.members.developer,
          guest_count: s.members.guest,
          limited_guest_count: s.members.limitedGuest,
        }
      : {}),
    ...(s.quota ? { quota: { hard: { storage: s.quota.hard }, used: { storage: s.quota.used } } } : {}),
  };
}

export const MemberSchema = Type.Object({
  id: Type.Integer(),
  project_id: Type.Integer(),
  entity_name: Type.String(),
  role_name: Type.String(),
  role_id: Type.Integer(),
  entity_id: Type.Integer(),
  entity_type: Type.String({ description: '"u" for a user ("g" for groups, not supported yet).' }),
});
export type MemberJson = Static<typeof MemberSchema>;

export function memberJson(m: MemberView): MemberJson {
  return { id: m.id, project_id: m.projectId, entity_name: m.username, role_name: m.roleName, role_id: m.roleId, entity_id: m.userId, entity_type: 'u' };
}

export const QuotaSchema = Type.Object({
  id: Type.Integer(),
  ref: Type.Object({ id: Type.Integer(), name: Type.String(), owner_name: Type.String() }),
  hard: Storage,
  used: Storage,
  creation_time: Time,
  update_time: Time,
});
export type QuotaJson = Static<typeof QuotaSchema>;

export function quotaJson(q: QuotaView): QuotaJson {
  return {
    id: q.id,
    ref: { id: q.projectId, name: q.projectName, owner_name: q.ownerName ?? '' },
    hard: { storage: q.hard },
    used: { storage: q.used },
    creation_time: iso(q.createdAt),
    update_time: iso(q.updatedAt),
  };
}
