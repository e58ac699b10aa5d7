/**
 * Harbor's role model as data, and the one function every route asks: may this subject do this
 * action on this resource here?
 *
 * Roles are Harbor's project role ids. The matrix follows Harbor's code (rbac_role.go), which is
 * authoritative where its docs differ. Anything not listed is denied.
 */

export const ProjectRole = {
  projectAdmin: 1,
  developer: 2,
  guest: 3,
  maintainer: 4,
  limitedGuest: 5,
} as const;
export type ProjectRoleId = (typeof ProjectRole)[keyof typeof ProjectRole];

export const PROJECT_ROLE_NAMES: Record<ProjectRoleId, string> = {
  1: 'projectAdmin',
  2: 'developer',
  3: 'guest',
  4: 'maintainer',
  5: 'limitedGuest',
};

export type Action = 'pull' | 'push' | 'create' | 'read' | 'update' | 'delete' | 'list' | 'operate' | 'stop';

/** Who may do what inside a project: resource → action → roles, plus what anyone may do on a public project. */
interface Grant {
  readonly roles: readonly ProjectRoleId[];
  /** Granted to every visitor, anonymous included, when the project is public. */
  readonly publicProject?: boolean;
}

const PA = ProjectRole.projectAdmin;
const MA = ProjectRole.maintainer;
const DEV = ProjectRole.developer;
const GU = ProjectRole.guest;
const LG = ProjectRole.limitedGuest;
const ALL = [PA, MA, DEV, GU, LG] as const;
const MEMBERS = [PA, MA, DEV, GU] as const;
const WRITERS = [PA, MA, DEV] as const;
const MAINTAINERS = [PA, MA] as const;
const ADMINS = [PA] as const;

export const PROJECT_MATRIX = {
  project: { read: { roles: ALL, publicProject: true }, update: { roles: ADMINS }, delete: { roles: ADMINS } },
  metadata: { read: { roles: MAINTAINERS }, create: { roles: ADMINS }, update: { roles: ADMINS }, delete: { roles: ADMINS } },
  configuration: { read: { roles: ALL }, update: { roles: ADMINS } },
  member: { read: { roles: MEMBERS }, list: { roles: MEMBERS }, create: { roles: ADMINS }, update: { roles: ADMINS }, delete: { roles: ADMINS } },
  log: { list: { roles: ADMINS } },
  quota: { read: { roles: ALL } },
  repository: {
    pull: { roles: ALL, publicProject: true },
    list: { roles: ALL, publicProject: true },
    read: { roles: ALL },
    push: { roles: WRITERS },
    create: { roles: WRITERS },
    update: { roles: WRITERS },
    delete: { roles: MAINTAINERS },
  },
  artifact: { read: { roles: ALL, publicProject: true }, list: { roles: ALL, publicProject: true }, create: { roles: WRITERS }, delete: { roles: MAINTAINERS } },
  'artifact-addition': { read: { roles: ALL, publicProject: true } },
  accessory: { list: { roles: ALL, publicProject: true } },
  tag: { list: { roles: ALL, publicProject: true }, create: { roles: WRITERS }, delete: { roles: MAINTAINERS } },
  'artifact-label': { create: { roles: WRITERS }, delete: { roles: WRITERS } },
  label: { read: { roles: MEMBERS, publicProject: true }, list: { roles: MEMBERS, publicProject: true }, create: { roles: MAINTAINERS }, update: { roles: MAINTAINERS }, delete: { roles: MAINTAINERS } },
  scan: { read: { roles: ALL, publicProject: true }, create: { roles: MAINTAINERS }, stop: { roles: MAINTAINERS } },
  sbom: { read: { roles: ALL }, create: { roles: MAINTAINERS }, stop: { roles: MAINTAINERS } },
  scanner: { read: { roles: ALL, publicProject: true }, create: { roles: ADMINS } },
  'export-cve': { create: { roles: WRITERS }, read: { roles: WRITERS }, list: { roles: WRITERS } },
  'tag-retention': {
    create: { roles: WRITERS },
    read: { roles: WRITERS },
    update: { roles: WRITERS },
    delete: { roles: WRITERS },
    list: { roles: WRITERS },
    operate: { roles: WRITERS },
  },
  'immutable-tag': { create: { roles: MAINTAINERS }, update: { roles: MAINTAINERS }, delete: { roles: MAINTAINERS }, list: { roles: MAINTAINERS } },
  robot: { read: { roles: MEMBERS }, list: { roles: MEMBERS }, create: { roles: ADMINS }, update: { roles: ADMINS }, delete: { roles: ADMINS } },
  'notification-policy': { read: { roles: MAINTAINERS }, list: { roles: MAINTAINERS }, create: { roles: ADMINS }, update: { roles: ADMINS }, delete: { roles: ADMINS } },
  'preheat-policy': { create: { roles: ADMINS }, read: { roles: ADMINS }, update: { roles: ADMINS }, delete: { roles: ADMINS }, list: { roles: ADMINS } },
} as const satisfies Record<string, Partial<Record<Action, Grant>>>;

export type ProjectResource = keyof typeof PROJECT_MATRIX;

/** System-wide resources: only system admins (and system robots granted them) act on these. */
export const SYSTEM_RESOURCES = [
  'audit-log',
  'project',
  'user',
  'user-group',
  'robot',
  'quota',
  'catalog',
  'garbage-collection',
  'purge-audit',
  'jobservice-monitor',
  'replication-policy',
  'replication',
  'registry',
  'scanner',
  'scan-all',
  'label',
  'configuration',
  'security-hub',
] as const;
export type SystemResource = (typeof SYSTEM_RESOURCES)[number];

/** One permission a robot account holds: in a project (or in every project, namespace "*") or system-wide. */
export interface RobotAccess {
  readonly kind: 'project' | 'system';
  /** Project name, or "*" for every project (system robots only); "/" for the system namespace. */
  readonly namespace: string;
  readonly resource: string;
  readonly action: string;
}

/** Who is asking. Built by the authentication layer from a password, a token, a session or nothing. */
export type Subject =
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'user'; readonly id: number; readonly name: string; readonly sysadmin: boolean }
  | { readonly kind: 'robot'; readonly id: number; readonly name: string; readonly access: readonly RobotAccess[] };

/** What the caller knows about the project in question (its visibility and the subject's roles in it). */
export interface ProjectContext {
  readonly name: string;
  readonly public: boolean;
  /** The subject's roles in this project (direct and through groups); empty when not a member. */
  readonly roles: readonly number[];
}

export type Permission =
  | { readonly scope: 'project'; readonly project: ProjectContext; readonly resource: ProjectResource; readonly action: Action }
  | { readonly scope: 'system'; readonly resource: SystemResource; readonly action: Action };

function grantOf(resource: ProjectResource, action: Action): Grant | undefined {
  return (PROJECT_MATRIX[resource] as Partial<Record<Action, Grant>>)[action];
}

function robotHolds(access: readonly RobotAccess[], permission: Permission): boolean {
  return access.some((a) => {
    if (a.resource !== permission.resource && a.resource !== '*') return false;
    if (a.action !== permission.action && a.action !== '*') return false;
    if (permission.scope === 'system') return a.kind === 'system';
    return a.kind === 'project' && (a.namespace === permission.project.name || a.namespace === '*');
  });
}

/**
 * The one authorization function. System admins may do everything; robots exactly what they were
 * granted (plus what any visitor may do on a public project); users what their project roles allow;
 * anonymous visitors only the public-project grants.
 */
export function isAllowed(subject: Subject, permission: Permission): boolean {
  if (subject.kind === 'user' && subject.sysadmin) return true;
  if (permission.scope === 'system') return subject.kind === 'robot' && robotHolds(subject.access, permission);
  const grant = grantOf(permission.resource, permission.action);
  if (grant?.publicProject && permission.project.public) return true;
  if (subject.kind === 'robot') return robotHolds(subject.access, permission);
  if (subject.kind === 'anonymous' || !grant) return false;
  return permission.project.roles.some((role) => (grant.roles as readonly number[]).includes(role));
}

/** Every (resource, action) pair of the project matrix, for robot permission validation and the permission catalogue. */
export function projectPermissions(): Array<{ resource: ProjectResource; action: Action }> {
  return (Object.entries(PROJECT_MATRIX) as Array<[ProjectResource, Partial<Record<Action, Grant>>]>).flatMap(([resource, actions]) =>
    (Object.keys(actions) as Action[]).map((action) => ({ resource, action })),
  );
}
