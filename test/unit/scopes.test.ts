import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  bearerChallenge,
  formatScope,
  isValidScopeRepositoryName,
  parseScopes,
  projectOfRepository,
  type ResourceAccess,
  requiredAccess,
  ScopeError,
} from '../../src/iam/scopes.ts';
import { matchV2Path, type V2Route } from '../../src/registry/router.ts';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const UPLOAD_ID = '0b0e1f5e-0c55-4d5c-9a57-3e8b5a3c1a2b';

const repo = (name: string, ...actions: string[]): ResourceAccess => ({ type: 'repository', name, actions });
const CATALOG: ResourceAccess = { type: 'registry', name: 'catalog', actions: ['*'] };

describe('parseScopes', () => {
  const cases: Array<[string, string | string[] | undefined, ResourceAccess[]]> = [
    ['no scope parameter', undefined, []],
    ['an empty scope parameter', '', []],
    ['one pull scope', 'repository:app:pull', [repo('app', 'pull')]],
    ['pull and push', 'repository:team/app:pull,push', [repo('team/app', 'pull', 'push')]],
    ['actions come out in canonical order', 'repository:app:delete,push,pull', [repo('app', 'pull', 'push', 'delete')]],
    ['duplicate actions collapse', 'repository:app:pull,pull', [repo('app', 'pull')]],
    ['delete alone', 'repository:app:delete', [repo('app', 'delete')]],
    ['* expands to pull, push and delete', 'repository:app:*', [repo('app', 'pull', 'push', 'delete')]],
    ['* next to other actions', 'repository:app:pull,*', [repo('app', 'pull', 'push', 'delete')]],
    ['nested path', 'repository:org/team/sub/app:pull', [repo('org/team/sub/app', 'pull')]],
    ['name with a host and port', 'repository:localhost:5000/a/b:pull,push', [repo('localhost:5000/a/b', 'pull', 'push')]],
    ['name with a dotted host and port', 'repository:reg.example.com:443/lib/app:pull', [repo('reg.example.com:443/lib/app', 'pull')]],
    ['name with a dotted host, no port', 'repository:Reg.Example.com/lib/app:pull', [repo('Reg.Example.com/lib/app', 'pull')]],
    ['name separators', 'repository:a.b_c__d---e/f:pull', [repo('a.b_c__d---e/f', 'pull')]],
    ['catalog', 'registry:catalog:*', [CATALOG]],
    [
      'several scopes separated by spaces',
      'repository:a:pull repository:b/c:pull,push registry:catalog:*',
      [repo('a', 'pull'), repo('b/c', 'pull', 'push'), CATALOG],
    ],
    ['extra spaces are ignored', '  repository:a:pull   repository:b:push ', [repo('a', 'pull'), repo('b', 'push')]],
    ['repeated parameters', ['repository:a:pull', 'repository:b:push'], [repo('a', 'pull'), repo('b', 'push')]],
    [
      'repeated parameters holding several scopes each',
      ['repository:a:pull repository:b:pull', 'repository:c:delete'],
      [repo('a', 'pull'), repo('b', 'pull'), repo('c', 'delete')],
    ],
    [
      'the same repository twice merges its actions',
      ['repository:a:pull', 'repository:b:pull repository:a:push'],
      [repo('a', 'pull', 'push'), repo('b', 'pull')],
    ],
    // Well-formed scopes of a type we do not serve grant nothing, without an error (as Harbor).
    ['a resource type with a class', 'repository(plugin):vieux/sshfs:pull', []],
    ['an unknown resource type', 'blob:app:pull repository:app:pull', [repo('app', 'pull')]],
  ];
  for (const [title, input, expected] of cases) {
    it(title, () => {
      assert.deepEqual(parseScopes(input), expected);
    });
  }

  const malformed: Array<[string, string, RegExp]> = [
    ['only a type', 'repository', /expected type:name:actions/],
    ['type and name only', 'repository:app', /expected type:name:actions/],
    ['empty type', ':app:pull', /empty resource type/],
    ['invalid type', 'Repository:app:pull', /invalid resource type/],
    ['unclosed type class', 'repository(plugin:app:pull', /invalid resource type/],
    ['empty name', 'repository::pull', /empty resource name/],
    ['empty action list', 'repository:app:', /no actions/],
    ['empty action in the list', 'repository:app:pull,,push', /empty action/],
    ['trailing comma', 'repository:app:pull,', /empty action/],
    ['unknown repository action', 'repository:app:pull,write', /unknown action "write"/],
    ['upper-case action', 'repository:app:PULL', /unknown action "PULL"/],
    ['scanner-pull is not ours', 'repository:app:scanner-pull', /unknown action "scanner-pull"/],
    ['upper-case repository name', 'repository:App:pull', /invalid repository name "App"/],
    ['name with a leading slash', 'repository:/app:pull', /invalid repository name/],
    ['name with a trailing slash', 'repository:app/:pull', /invalid repository name/],
    ['name with a double slash', 'repository:a//b:pull', /invalid repository name/],
    ['name with a bad separator', 'repository:a-/b:pull', /invalid repository name/],
    ['host without a path', 'repository:localhost:5000:pull', /invalid repository name "localhost:5000"/],
    ['non-numeric port', 'repository:localhost:abc/app:pull', /invalid repository name/],
    ['host with a bad path', 'repository:localhost:5000/App:pull', /invalid repository name/],
    ['over-long name', `repository:${'a/'.repeat(128)}a:pull`, /invalid repository name/],
    ['registry resource other than catalog', 'registry:users:*', /unknown registry resource "users"/],
    ['catalog with a named action', 'registry:catalog:pull', /unknown action "pull"/],
  ];
  for (const [title, scope, message] of malformed) {
    it(`rejects ${title}`, () => {
      assert.throws(
        () => parseScopes(scope),
        (err: unknown) => {
          assert.ok(err instanceof ScopeError, `expected ScopeError, got ${String(err)}`);
          assert.equal(err.scope, scope);
          assert.match(err.message, message);
          assert.ok(err.message.includes(scope), 'the message names the scope');
          return true;
        },
      );
    });
  }

  it('reports the malformed scope among good ones, also in a repeated parameter', () => {
    assert.throws(
      () => parseScopes(['repository:a:pull', 'repository:b:pull repository:c:fly']),
      (err: unknown) => err instanceof ScopeError && err.scope === 'repository:c:fly',
    );
  });
});

describe('scope helpers', () => {
  it('formatScope writes type:name:actions', () => {
    assert.equal(formatScope(repo('localhost:5000/a/b', 'pull', 'push')), 'repository:localhost:5000/a/b:pull,push');
    assert.equal(formatScope(CATALOG), 'registry:catalog:*');
  });

  it('formatScope output parses back to the same access', () => {
    for (const access of [repo('a/b', 'pull'), repo('localhost:5000/x', 'pull', 'push', 'delete'), CATALOG]) {
      assert.deepEqual(parseScopes(formatScope(access)), [access]);
    }
  });

  it('projectOfRepository is the first path segment', () => {
    assert.equal(projectOfRepository('library/app'), 'library');
    assert.equal(projectOfRepository('org/team/app'), 'org');
    assert.equal(projectOfRepository('app'), 'app');
  });

  it('isValidScopeRepositoryName accepts plain names and host-prefixed ones only', () => {
    assert.equal(isValidScopeRepositoryName('a/b'), true);
    assert.equal(isValidScopeRepositoryName('localhost:5000/a'), true);
    assert.equal(isValidScopeRepositoryName('-host:5000/a'), false);
    assert.equal(isValidScopeRepositoryName('localhost:5000/'), false);
    assert.equal(isValidScopeRepositoryName(''), false);
  });
});

describe('requiredAccess', () => {
  const route = (path: string): V2Route => {
    const r = matchV2Path(path);
    assert.ok(r, `no route for ${path}`);
    return r;
  };
  const cases: Array<[string, string, Record<string, string | string[]> | undefined, ResourceAccess[]]> = [
    ['GET', '', undefined, []],
    ['HEAD', '', undefined, []],
    ['GET', '_catalog', undefined, [CATALOG]],
    ['GET', 'team/app/tags/list', undefined, [repo('team/app', 'pull')]],
    ['GET', 'app/manifests/latest', undefined, [repo('app', 'pull')]],
    ['HEAD', `app/manifests/${DIGEST}`, undefined, [repo('app', 'pull')]],
    ['PUT', 'a/b/c/manifests/v1', undefined, [repo('a/b/c', 'pull', 'push')]],
    ['DELETE', `app/manifests/${DIGEST}`, undefined, [repo('app', 'delete')]],
    ['GET', `app/blobs/${DIGEST}`, undefined, [repo('app', 'pull')]],
    ['HEAD', `app/blobs/${DIGEST}`, undefined, [repo('app', 'pull')]],
    ['DELETE', `app/blobs/${DIGEST}`, undefined, [repo('app', 'delete')]],
    ['GET', `app/referrers/${DIGEST}`, undefined, [repo('app', 'pull')]],
    ['POST', 'team/app/blobs/uploads/', undefined, [repo('team/app', 'pull', 'push')]],
    ['GET', `app/blobs/uploads/${UPLOAD_ID}`, undefined, [repo('app', 'pull')]],
    ['PATCH', `app/blobs/uploads/${UPLOAD_ID}`, undefined, [repo('app', 'pull', 'push')]],
    ['PUT', `app/blobs/uploads/${UPLOAD_ID}`, undefined, [repo('app', 'pull', 'push')]],
    ['DELETE', `app/blobs/uploads/${UPLOAD_ID}`, undefined, [repo('app', 'delete')]],
    // Methods arrive in any case from some callers.
    ['get', 'app/manifests/latest', undefined, [repo('app', 'pull')]],
    // A method no route takes asks for everything rather than less.
    ['OPTIONS', 'app/manifests/latest', undefined, [repo('app', 'pull', 'push', 'delete')]],
    // Cross-repository mount: pull on the source as well.
    ['POST', 'dst/app/blobs/uploads/', { mount: DIGEST, from: 'src/app' }, [repo('dst/app', 'pull', 'push'), repo('src/app', 'pull')]],
    ['POST', 'dst/app/blobs/uploads/', { mount: DIGEST, from: 'src%2Fapp' }, [repo('dst/app', 'pull', 'push'), repo('src/app', 'pull')]],
    ['POST', 'dst/app/blobs/uploads/', { mount: DIGEST, from: 'src%2fteam%2Fapp' }, [repo('dst/app', 'pull', 'push'), repo('src/team/app', 'pull')]],
    ['POST', 'dst/blobs/uploads/', { from: ['src', 'other'] }, [repo('dst', 'pull', 'push'), repo('src', 'pull')]],
    // Mounting from itself adds nothing new.
    ['POST', 'app/blobs/uploads/', { mount: DIGEST, from: 'app' }, [repo('app', 'pull', 'push')]],
    // A source that is no repository name cannot be mounted from: no extra access.
    ['POST', 'app/blobs/uploads/', { mount: DIGEST, from: 'Bad Name' }, [repo('app', 'pull', 'push')]],
    ['POST', 'app/blobs/uploads/', { mount: DIGEST, from: '%zz' }, [repo('app', 'pull', 'push')]],
    ['POST', 'app/blobs/uploads/', { mount: DIGEST, from: '' }, [repo('app', 'pull', 'push')]],
    // `from` means nothing outside a POST that starts an upload.
    ['PATCH', `app/blobs/uploads/${UPLOAD_ID}`, { from: 'src' }, [repo('app', 'pull', 'push')]],
    ['GET', 'app/manifests/latest', { from: 'src' }, [repo('app', 'pull')]],
  ];
  for (const [method, path, query, expected] of cases) {
    it(`${method} /v2/${path}${query ? ` ${JSON.stringify(query)}` : ''}`, () => {
      assert.deepEqual(requiredAccess(method, route(path), query), expected);
    });
  }

  it('works on routes from an encoded path (names decoded by the router)', () => {
    assert.deepEqual(requiredAccess('PUT', route('team%2Fapp/manifests/v1')), [repo('team/app', 'pull', 'push')]);
  });
});

describe('bearerChallenge', () => {
  const realm = 'https://reg.example.com/service/token';
  const cases: Array<[string, ResourceAccess[], string]> = [
    ['the base path asks for no scope', [], 'Bearer realm="https://reg.example.com/service/token",service="berth"'],
    ['pull', [repo('library/app', 'pull')], 'Bearer realm="https://reg.example.com/service/token",service="berth",scope="repository:library/app:pull"'],
    ['push', [repo('a/b', 'pull', 'push')], 'Bearer realm="https://reg.example.com/service/token",service="berth",scope="repository:a/b:pull,push"'],
    ['delete', [repo('a', 'delete')], 'Bearer realm="https://reg.example.com/service/token",service="berth",scope="repository:a:delete"'],
    ['catalog', [CATALOG], 'Bearer realm="https://reg.example.com/service/token",service="berth",scope="registry:catalog:*"'],
    [
      'a mount names both repositories in one scope attribute',
      [repo('dst', 'pull', 'push'), repo('src/app', 'pull')],
      'Bearer realm="https://reg.example.com/service/token",service="berth",scope="repository:dst:pull,push repository:src/app:pull"',
    ],
  ];
  for (const [title, access, expected] of cases) {
    it(title, () => {
      assert.equal(bearerChallenge(realm, 'berth', access), expected);
    });
  }

  it('end to end: a mount request yields the challenge docker expects', () => {
    const r = matchV2Path('dst/app/blobs/uploads/');
    assert.ok(r);
    assert.equal(
      bearerChallenge('http://localhost:5000/service/token', 'berth', requiredAccess('POST', r, { mount: DIGEST, from: 'src/app' })),
      'Bearer realm="http://localhost:5000/service/token",service="berth",scope="repository:dst/app:pull,push repository:src/app:pull"',
    );
  });

  it('escapes quotes and backslashes in quoted values', () => {
    assert.equal(bearerChallenge('http://h/"x\\', 's"', []), 'Bearer realm="http://h/\\"x\\\\",service="s\\""');
  });
});
