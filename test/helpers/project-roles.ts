/**
 * A cast for permission tests of the project API: a system admin, one user per project role, a
 * logged-in outsider and an anonymous visitor, each holding its role in a private and a public
 * project; and the answer a refused caller gets (401 anonymous, 404 when it may not even see the
 * project, 403 otherwise).
 */
import assert from 'node:assert/strict';
import { addMember, createUser, type TestUser } from './iam.ts';
import { ADMIN_AUTH, type TestServer } from './server.ts';

export const CALLERS = ['admin', 'projectAdmin', 'maintainer', 'developer', 'guest', 'limitedGuest', 'outsider', 'anonymous'] as const;
export type Caller = (typeof CALLERS)[number];

const ROLE_IDS: Partial<Record<Caller, number>> = { projectAdmin: 1, developer: 2, guest: 3, maintainer: 4, limitedGuest: 5 };

export interface TestProject {
  readonly id: number;
  readonly name: string;
  readonly public: boolean;
}

export interface Cast {
  readonly users: Record<Exclude<Caller, 'admin' | 'anonymous'>, TestUser>;
  readonly priv: TestProject;
  readonly pub: TestProject;
  /** Request headers of the caller (none for anonymous). */
  headers(caller: Caller, extra?: Record<string, string>): Record<string, string>;
}

/** Creates `<prefix>-priv` and `<prefix>-pub` through the API (as admin) and a user per role in both. */
export async function createCast(server: TestServer, prefix: string): Promise<Cast> {
  const projects: TestProject[] = [];
  for (const [suffix, isPublic] of [
    ['priv', false],
    ['pub', true],
  ] as const) {
    const name = `${prefix}-${suffix}`;
    const res = await fetch(`${server.url}/api/v2.0/projects`, {
      method: 'POST',
      headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ project_name: name, metadata: { public: String(isPublic) } }),
    });
    assert.equal(res.status, 201, await res.text());
    const id = Number(res.headers.get('location')?.split('/').pop());
    projects.push({ id, name, public: isPublic });
  }
  const [priv, pub] = projects as [TestProject, TestProject];
  const users = {} as Record<Exclude<Caller, 'admin' | 'anonymous'>, TestUser>;
  for (const caller of CALLERS) {
    if (caller === 'admin' || caller === 'anonymous') continue;
    const user = await createUser(server, `${prefix}-${caller.toLowerCase()}`);
    users[caller] = user;
    const role = ROLE_IDS[caller];
    if (role !== undefined) for (const project of projects) await addMember(server, project.id, user, role);
  }
  return {
    users,
    priv,
    pub,
    headers(caller, extra = {}) {
      if (caller === 'anonymous') return { ...extra };
      return { authorization: caller === 'admin' ? ADMIN_AUTH : users[caller].auth, ...extra };
    },
  };
}

/** The status a refused caller gets from AccessControl.requireProject. */
export function refusal(caller: Caller, project: TestProject): number {
  if (caller === 'anonymous') return 401;
  const seesProject = project.public || caller !== 'outsider';
  return seesProject ? 403 : 404;
}
