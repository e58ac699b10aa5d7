/**
 * Project members: users with one of Harbor's project roles. Groups are not supported yet.
 *
 * Removing or demoting a project's last Project Admin is allowed, as in Harbor: system admins can
 * always manage the project and appoint a new one, and refusing would block legitimate hand-overs
 * done in two steps by tools.
 */
import type { ProjectRef } from '../iam/access.ts';
import { PROJECT_ROLE_NAMES, type ProjectRoleId } from '../iam/rbac.ts';
import { badRequest, conflict, notFound } from '../platform/http/api.ts';
import type { MemberRow, Page, ProjectStore, UserRef } from './store.ts';

export interface MemberView {
  readonly id: number;
  readonly projectId: number;
  readonly userId: number;
  readonly username: string;
  readonly roleId: number;
  readonly roleName: string;
}

/** Harbor's ProjectMember request, as validated by the route schema. */
export interface MemberRequest {
  readonly role_id: number;
  readonly member_user?: { readonly user_id?: number; readonly username?: string };
  readonly member_group?: unknown;
}

export function roleName(roleId: number): string {
  return PROJECT_ROLE_NAMES[roleId as ProjectRoleId] ?? 'unknown';
}

/** A 400 unless `roleId` is one of Harbor's five project roles. */
export function checkRole(roleId: number): void {
  if (!Number.isInteger(roleId) || !(roleId in PROJECT_ROLE_NAMES)) {
    throw badRequest(`role_id must be 1 (project admin), 2 (developer), 3 (guest), 4 (maintainer) or 5 (limited guest); got ${roleId}`);
  }
}

function viewOf(row: MemberRow): MemberView {
  return { id: row.id, projectId: row.project_id, userId: row.user_id, username: row.username, roleId: row.role_id, roleName: roleName(row.role_id) };
}

export class MemberService {
  readonly #store: ProjectStore;
  readonly #now: () => number;

  constructor(store: ProjectStore, now: () => number) {
    this.#store = store;
    this.#now = now;
  }

  /** A page of members ordered by name; `entityName` matches part of the name. */
  async list(project: ProjectRef, entityName: string | undefined, page: Page): Promise<{ items: MemberView[]; total: number }> {
    const { rows, total } = await this.#store.listMembers(project.id, entityName, page);
    return { items: rows.map(viewOf), total };
  }

  async get(project: ProjectRef, memberId: number): Promise<MemberView> {
    const row = await this.#store.member(project.id, memberId);
    if (!row) throw notFound(`member ${memberId} not found in project ${project.name}`);
    return viewOf(row);
  }

  /** Adds a user by id or name; 404 for an unknown user, 409 when already a member. Returns the member id. */
  async add(project: ProjectRef, request: MemberRequest): Promise<number> {
    checkRole(request.role_id);
    if (request.member_group !== undefined) throw badRequest('user groups are not supported yet; give member_user');
    const user = await this.#userOf(request.member_user);
    const id = await this.#store.insertMember(project.id, user.id, request.role_id, this.#now());
    if (id === undefined) throw conflict(`user ${user.username} is already a member of project ${project.name}`);
    return id;
  }

  async #userOf(given: MemberRequest['member_user']): Promise<UserRef> {
    const userId = given?.user_id !== undefined && given.user_id > 0 ? given.user_id : undefined;
    const username = given?.username !== undefined && given.username !== '' ? given.username : undefined;
    if (userId === undefined && username === undefined) throw badRequest('member_user needs user_id or username');
    const user = userId !== undefined ? await this.#store.userById(userId) : await this.#store.userByName(username as string);
    if (!user) throw notFound(`user ${userId ?? username} not found`);
    if (userId !== undefined && username !== undefined && user.username !== username) throw badRequest(`member_user: user ${userId} is not named ${username}`);
    return user;
  }

  async updateRole(project: ProjectRef, memberId: number, roleId: number): Promise<void> {
    checkRole(roleId);
    if (!(await this.#store.updateMemberRole(project.id, memberId, roleId, this.#now()))) throw notFound(`member ${memberId} not found in project ${project.name}`);
  }

  async remove(project: ProjectRef, memberId: number): Promise<void> {
    if (!(await this.#store.deleteMember(project.id, memberId))) throw notFound(`member ${memberId} not found in project ${project.name}`);
  }
}
