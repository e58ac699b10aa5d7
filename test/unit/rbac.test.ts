import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Action, isAllowed, type Permission, type ProjectResource, ProjectRole, projectPermissions, type Subject } from '../../src/iam/rbac.ts';

/**
 * The expected matrix, written out as Harbor documents it (reference/harbor.md §2.4, from
 * rbac_role.go): PA, Maintainer, Developer, Guest, Limited guest, anyone on a public project.
 * The implementation holds the same facts as data; this table is the independent statement.
 */
const EXPECTED = `
project        read                 Y Y Y Y Y Y
project        update,delete        Y - - - - -
metadata       read                 Y Y - - - -
metadata       create,update,delete Y - - - - -
configuration  read                 Y Y Y Y Y -
configuration  update               Y - - - - -
member         read,list            Y Y Y Y - -
member         create,update,delete Y - - - - -
log            list                 Y - - - - -
quota          read                 Y Y Y Y Y -
repository     pull,list            Y Y Y Y Y Y
repository     read                 Y Y Y Y Y -
repository     push,create,update   Y Y Y - - -
repository     delete               Y Y - - - -
artifact       read,list            Y Y Y Y Y Y
artifact       create               Y Y Y - - -
artifact       delete               Y Y - - - -
artifact-addition read              Y Y Y Y Y Y
accessory      list                 Y Y Y Y Y Y
tag            list                 Y Y Y Y Y Y
tag            create               Y Y Y - - -
tag            delete               Y Y - - - -
artifact-label create,delete        Y Y Y - - -
label          read,list            Y Y Y Y - Y
label          create,update,delete Y Y - - - -
scan           read                 Y Y Y Y Y Y
scan           create,stop          Y Y - - - -
sbom           read                 Y Y Y Y Y -
sbom           create,stop          Y Y - - - -
scanner        read                 Y Y Y Y Y Y
scanner        create               Y - - - - -
export-cve     create,read,list     Y Y Y - - -
tag-retention  create,read,update,delete,list,operate Y Y Y - - -
immutable-tag  create,update,delete,list Y Y - - - -
robot          read,list            Y Y Y Y - -
robot          create,update,delete Y - - - - -
notification-policy read,list       Y Y - - - -
notification-policy create,update,delete Y - - - - -
preheat-policy create,read,update,delete,list Y - - - - -
`;

const ROLES = [ProjectRole.projectAdmin, ProjectRole.maintainer, ProjectRole.developer, ProjectRole.guest, ProjectRole.limitedGuest] as const;

interface Row {
  resource: ProjectResource;
  action: Action;
  byRole: boolean[];
  anyoneOnPublic: boolean;
}

const ROWS: Row[] = EXPECTED.trim()
  .split('\n')
  .flatMap((line) => {
    const [resource, actions, ...flags] = line.trim().split(/\s+/) as [ProjectResource, string, ...string[]];
    assert.equal(flags.length, 6, `row ${line}`);
    return actions.split(',').map((action) => ({
      resource,
      action: action as Action,
      byRole: flags.slice(0, 5).map((f) => f === 'Y'),
      anyoneOnPublic: flags[5] === 'Y',
    }));
  });

const user = (sysadmin = false): Subject => ({ kind: 'user', id: 7, name: 'u', sysadmin });
const anonymous: Subject = { kind: 'anonymous' };
const inProject = (row: Row, roles: number[], isPublic: boolean, name = 'team'): Permission => ({
  scope: 'project',
  project: { name, public: isPublic, roles },
  resource: row.resource,
  action: row.action,
});

describe('the permission matrix', () => {
  it('covers exactly the rows Harbor documents', () => {
    const expected = ROWS.map((r) => `${r.resource}:${r.action}`).sort();
    const implemented = projectPermissions().map((p) => `${p.resource}:${p.action}`).sort();
    assert.deepEqual(implemented, expected);
  });

  for (const row of ROWS) {
    it(`${row.resource}:${row.action}`, () => {
      ROLES.forEach((role, i) => {
        assert.equal(isAllowed(user(), inProject(row, [role], false)), row.byRole[i], `role ${role} on a private project`);
      });
      assert.equal(isAllowed(user(), inProject(row, [], false)), false, 'a non-member of a private project');
      assert.equal(isAllowed(anonymous, inProject(row, [], false)), false, 'anonymous on a private project');
      assert.equal(isAllowed(anonymous, inProject(row, [], true)), row.anyoneOnPublic, 'anonymous on a public project');
      assert.equal(isAllowed(user(), inProject(row, [], true)), row.anyoneOnPublic, 'a non-member on a public project');
      assert.equal(isAllowed(user(true), inProject(row, [], false)), true, 'a system admin');
    });
  }
});

describe('several roles and system scope', () => {
  const push = ROWS.find((r) => r.resource === 'repository' && r.action === 'push') as Row;

  it('a member with several roles gets the union', () => {
    assert.equal(isAllowed(user(), inProject(push, [ProjectRole.guest, ProjectRole.developer], false)), true);
    assert.equal(isAllowed(user(), inProject(push, [ProjectRole.guest, ProjectRole.limitedGuest], false)), false);
  });

  it('an unknown role id grants nothing', () => {
    assert.equal(isAllowed(user(), inProject(push, [99], false)), false);
  });

  it('system resources are for system admins and robots granted them, never for project roles or anonymous', () => {
    const gc: Permission = { scope: 'system', resource: 'garbage-collection', action: 'create' };
    assert.equal(isAllowed(user(true), gc), true);
    assert.equal(isAllowed(user(false), gc), false);
    assert.equal(isAllowed(anonymous, gc), false);
    assert.equal(isAllowed({ kind: 'robot', id: 1, name: 'robot$ops', access: [{ kind: 'system', namespace: '/', resource: 'garbage-collection', action: 'create' }] }, gc), true);
    assert.equal(isAllowed({ kind: 'robot', id: 1, name: 'robot$ops', access: [{ kind: 'project', namespace: '*', resource: 'garbage-collection', action: 'create' }] }, gc), false);
  });
});

describe('robots', () => {
  const pull = ROWS.find((r) => r.resource === 'repository' && r.action === 'pull') as Row;
  const push = ROWS.find((r) => r.resource === 'repository' && r.action === 'push') as Row;
  const robot = (access: Array<{ kind: 'project' | 'system'; namespace: string; resource: string; action: string }>): Subject => ({ kind: 'robot', id: 3, name: 'robot$team+ci', access });

  it('hold exactly what they were granted, in the project they were granted it in', () => {
    const ci = robot([{ kind: 'project', namespace: 'team', resource: 'repository', action: 'pull' }]);
    assert.equal(isAllowed(ci, inProject(pull, [], false, 'team')), true);
    assert.equal(isAllowed(ci, inProject(push, [], false, 'team')), false, 'no push without the grant');
    assert.equal(isAllowed(ci, inProject(pull, [], false, 'other')), false, 'another project is out of reach');
  });

  it('a system robot covering every project reaches them all; a wildcard action covers every action', () => {
    const all = robot([{ kind: 'project', namespace: '*', resource: 'repository', action: '*' }]);
    assert.equal(isAllowed(all, inProject(push, [], false, 'anything')), true);
    assert.equal(isAllowed(all, inProject(pull, [], false, 'else')), true);
  });

  it('roles listed on the project context do not widen a robot', () => {
    const ci = robot([]);
    assert.equal(isAllowed(ci, inProject(push, [ProjectRole.projectAdmin], false)), false);
  });

  it('pull from a public project needs no grant', () => {
    assert.equal(isAllowed(robot([]), inProject(pull, [], true)), true);
    assert.equal(isAllowed(robot([]), inProject(push, [], true)), false);
  });
});
