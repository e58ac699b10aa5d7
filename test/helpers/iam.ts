/**
 * Test fixtures for access control: users, projects, memberships and robots written straight into
 * the test server's database, so that a registry or permission test does not depend on the
 * management API it may be testing.
 */
import { hashPassword } from '../../src/iam/passwords.ts';
import { basicAuth, type TestServer } from './server.ts';

export interface TestUser {
  readonly id: number;
  readonly name: string;
  readonly password: string;
  /** The Authorization header value for HTTP Basic. */
  readonly auth: string;
}

export async function createUser(server: TestServer, name: string, options: { sysadmin?: boolean; password?: string } = {}): Promise<TestUser> {
  const password = options.password ?? 'Passw0rd!x';
  const now = Date.now();
  const row = await server.app.database.db
    .insertInto('users')
    .values({ username: name, email: null, realname: name, comment: '', password_hash: await hashPassword(password), sysadmin: options.sysadmin ? 1 : 0, created_at: now, updated_at: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, name, password, auth: basicAuth(name, password) };
}

export async function createProject(server: TestServer, name: string, options: { public?: boolean; storageLimit?: number } = {}): Promise<number> {
  const now = Date.now();
  const db = server.app.database.db;
  const row = await db
    .insertInto('projects')
    .values({ name, owner_id: 1, public: options.public ? 1 : 0, metadata: JSON.stringify({ public: options.public ? 'true' : 'false' }), created_at: now, updated_at: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db.insertInto('quotas').values({ project_id: row.id, hard: options.storageLimit ?? -1, used: 0, created_at: now, updated_at: now }).execute();
  return row.id;
}

export async function addMember(server: TestServer, projectId: number, user: TestUser, roleId: number): Promise<void> {
  const now = Date.now();
  await server.app.database.db.insertInto('project_members').values({ project_id: projectId, user_id: user.id, role_id: roleId, created_at: now, updated_at: now }).execute();
}

export async function quotaOf(server: TestServer, projectId: number): Promise<{ hard: number; used: number }> {
  return server.app.database.db.selectFrom('quotas').select(['hard', 'used']).where('project_id', '=', projectId).executeTakeFirstOrThrow();
}

/** A registry token from /service/token for the given scopes, as `user` (Basic) or anonymously. */
export async function registryToken(server: TestServer, scopes: readonly string[], auth?: string): Promise<string> {
  const query = new URLSearchParams([['service', 'berth'], ...scopes.map((s) => ['scope', s] as [string, string])]);
  const res = await fetch(`${server.url}/service/token?${query}`, { headers: auth ? { authorization: auth } : {} });
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

/** The access claim of a token (no verification: for asserting what was granted). */
export function tokenAccess(token: string): Array<{ type: string; name: string; actions: string[] }> {
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { access?: Array<{ type: string; name: string; actions: string[] }> };
  return payload.access ?? [];
}
