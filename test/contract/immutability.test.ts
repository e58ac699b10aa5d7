/**
 * Tag immutability's store and service (src/retention/immutability-*.ts) on every database
 * backend, without HTTP: rule CRUD and validation, the per-project rule limit under concurrent
 * writers, duplicates, cascade with the project, what retention reads (rulesOf), and the registry
 * gate with its rule cache: which moves and deletes it refuses, that it reads nothing it does not
 * need, that local rule changes apply at once and other nodes' changes within the cache lifetime.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { ApiError } from '../../src/platform/http/api.ts';
import { ManifestGateError } from '../../src/registry/manifests.ts';
import { MAX_IMMUTABLE_RULES } from '../../src/retention/immutability.ts';
import { DEFAULT_RULE_CACHE_TTL_MS, ImmutabilityService, type ImmutableRuleInput, validateRule } from '../../src/retention/immutability-service.ts';
import { ImmutabilityStore } from '../../src/retention/immutability-store.ts';
import type { Selector } from '../../src/retention/selectors.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;

function rule(repoPattern: string, tagPattern: string, options: { kind?: Selector['kind']; repoExcludes?: boolean; tagExcludes?: boolean; disabled?: boolean; priority?: number } = {}): ImmutableRuleInput {
  const kind = options.kind ?? 'doublestar';
  return {
    disabled: options.disabled,
    priority: options.priority,
    tag_selectors: [{ kind, decoration: options.tagExcludes ? 'excludes' : 'matches', pattern: tagPattern }],
    scope_selectors: { repository: [{ kind: 'doublestar', decoration: options.repoExcludes ? 'repoExcludes' : 'repoMatches', pattern: repoPattern }] },
  };
}

async function rejectsApi(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

async function refused(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ManifestGateError, `expected a ManifestGateError, got ${String(err)}`);
    assert.equal(err.code, 'DENIED');
    assert.match(err.message, message);
    return true;
  });
}

describe('immutability rule validation', () => {
  const bad: Array<[string, ImmutableRuleInput, RegExp]> = [
    ['an unterminated class', rule('**', 'v[1'), /unterminated \[/],
    ['an invalid regular expression', rule('**', '(', { kind: 'regex' }), /not a valid regular expression/],
    ['a bad repository pattern', rule('{a,b', '**'), /unterminated \{/],
    ['a pattern longer than the limit', rule('**', 'x'.repeat(300)), /longer than 256/],
    ['no tag selector', { tag_selectors: [], scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] } }, /needs a tag selector/],
    ['no repository selector', { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: '**' }], scope_selectors: { repository: [] } }, /needs a repository selector/],
    ['another action', { ...rule('**', '**'), action: 'retain' }, /action must be "immutable"/],
    ['another template', { ...rule('**', '**'), template: 'always' }, /template must be "immutable_template"/],
    ['malformed extras', { ...rule('**', '**'), tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: '**', extras: '{untagged' }] }, /extras is not JSON/],
  ];
  for (const [name, input, message] of bad) {
    it(`refuses ${name} with a 400 naming the problem`, () => {
      assert.throws(
        () => validateRule(input),
        (err: unknown) => err instanceof ApiError && err.code === 'BAD_REQUEST' && message.test(err.message),
      );
    });
  }

  it('normalises defaults: priority 0, enabled, no empty extras', () => {
    const fields = validateRule({ ...rule('**', 'v*'), tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v*', extras: '' }] });
    assert.deepEqual(fields, {
      priority: 0,
      disabled: false,
      tagSelectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v*' }],
      repositorySelectors: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }],
    });
  });
});

for (const backend of BACKENDS) {
  describe(`immutability store and gate on ${backend}`, () => {
    let testDatabase: TestDatabase;
    let dataDir: string;
    let handle: DatabaseHandle;
    let store: ImmutabilityStore;
    let now = 1_700_000_000_000;
    let projectReads = 0;
    let tagReads = 0;
    /** repository → digest → tags: what the registry would answer. */
    const tags = new Map<string, Map<string, string[]>>();
    const projectIds = new Map<string, number>();

    const service = (ttlMs?: number) =>
      new ImmutabilityService({
        store,
        projects: {
          findByName: async (name) => {
            projectReads++;
            const id = projectIds.get(name);
            return id === undefined ? undefined : { id };
          },
        },
        tagsOfManifest: async (repository, digest) => {
          tagReads++;
          return tags.get(repository)?.get(digest) ?? [];
        },
        now: () => now,
        ...(ttlMs !== undefined ? { cacheTtlMs: ttlMs } : {}),
      });

    async function createProject(name: string): Promise<{ id: number; name: string }> {
      const row = await handle.db
        .insertInto('projects')
        .values({ name, owner_id: null, public: 0, metadata: '{}', created_at: now, updated_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      projectIds.set(name, Number(row.id));
      return { id: Number(row.id), name };
    }

    /** A lazy current-digest reader that counts its calls. */
    function current(digest: string | undefined): { read: () => Promise<string | undefined>; calls: () => number } {
      let calls = 0;
      return {
        read: async () => {
          calls++;
          return digest;
        },
        calls: () => calls,
      };
    }

    before(async () => {
      testDatabase = await createTestDatabase(backend);
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-immutability-'));
      handle = createDatabase({ url: testDatabase.url, sqliteFile: path.join(dataDir, 'berth.db') });
      await handle.migrate();
      store = new ImmutabilityStore(handle.db);
    });

    after(async () => {
      await handle?.close();
      await testDatabase?.drop();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    beforeEach(() => {
      projectReads = 0;
      tagReads = 0;
    });

    it('creates, lists (paged, sorted), updates and deletes rules in Harbor shape', async () => {
      const imm = service();
      const project = await createProject('crud');
      const a = await imm.create(project, rule('**', 'v*', { priority: 5 }));
      now += 1;
      const b = await imm.create(project, rule('app', 'release-*', { kind: 'regex', priority: 1 }));
      assert.deepEqual(a, {
        id: a.id,
        project_id: project.id,
        priority: 5,
        disabled: false,
        action: 'immutable',
        template: 'immutable_template',
        params: {},
        tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v*' }],
        scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
      });
      assert.ok(b.id > a.id);
      assert.deepEqual(
        (await imm.list(project.id, [], 0, 10)).items.map((r) => r.id),
        [a.id, b.id],
      );
      assert.deepEqual(
        (await imm.list(project.id, [{ key: 'priority', desc: false }], 0, 10)).items.map((r) => r.id),
        [b.id, a.id],
      );
      const page2 = await imm.list(project.id, [], 1, 1);
      assert.deepEqual([page2.total, page2.items.map((r) => r.id)], [2, [b.id]]);

      const updated = await imm.update(project, a.id, rule('**', 'stable', { disabled: true }));
      assert.deepEqual([updated.id, updated.disabled, updated.priority, updated.tag_selectors[0]?.pattern], [a.id, true, 0, 'stable']);
      await imm.delete(project, b.id);
      assert.deepEqual(
        (await imm.list(project.id, [], 0, 10)).items.map((r) => r.id),
        [a.id],
      );
      await rejectsApi(imm.delete(project, b.id), 'NOT_FOUND', /rule \d+ not found in project crud/);
      await rejectsApi(imm.update(project, b.id, rule('**', '**')), 'NOT_FOUND');
    });

    it('a rule of another project is not found through this one', async () => {
      const imm = service();
      const mine = await createProject('mine');
      const theirs = await createProject('theirs');
      const theirRule = await imm.create(theirs, rule('**', '**'));
      await rejectsApi(imm.update(mine, theirRule.id, rule('**', 'x')), 'NOT_FOUND');
      await rejectsApi(imm.delete(mine, theirRule.id), 'NOT_FOUND');
      assert.equal((await imm.list(theirs.id, [], 0, 10)).total, 1);
    });

    it(`refuses rule ${MAX_IMMUTABLE_RULES + 1}, also when many writers race for the last places`, async () => {
      const imm = service();
      const project = await createProject('limit');
      for (let i = 0; i < MAX_IMMUTABLE_RULES - 3; i++) await imm.create(project, rule('**', `t${i}`));
      const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => imm.create(project, rule('**', `race${i}`))));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof ApiError && r.reason.code === 'BAD_REQUEST' && /at most|the most a project may have/.test(r.reason.message), String(r.reason));
      assert.equal(await store.count(project.id), MAX_IMMUTABLE_RULES);
    });

    it('refuses a second rule with the same selectors (409), on create and on update', async () => {
      const imm = service();
      const project = await createProject('dupes');
      const first = await imm.create(project, rule('app', 'v*'));
      await rejectsApi(imm.create(project, rule('app', 'v*', { disabled: true, priority: 3 })), 'CONFLICT', new RegExp(`rule ${first.id} already has`));
      const second = await imm.create(project, rule('app', 'w*'));
      await rejectsApi(imm.update(project, second.id, rule('app', 'v*')), 'CONFLICT');
      // Updating a rule to what it already is is no conflict with itself.
      await imm.update(project, first.id, rule('app', 'v*', { priority: 9 }));
    });

    it('rules go with their project', async () => {
      const imm = service();
      const project = await createProject('doomed');
      await imm.create(project, rule('**', '**'));
      await handle.db.deleteFrom('projects').where('id', '=', project.id).execute();
      assert.equal(await store.count(project.id), 0);
    });

    it('rulesOf gives retention every rule (disabled too) in the pure model', async () => {
      const imm = service();
      const project = await createProject('for-retention');
      const a = await imm.create(project, rule('**', 'v*'));
      const b = await imm.create(project, rule('app', 'x', { disabled: true }));
      assert.deepEqual(await imm.rulesOf(project.id), [
        { id: a.id, priority: 0, disabled: false, tag_selectors: a.tag_selectors, scope_selectors: a.scope_selectors },
        { id: b.id, priority: 0, disabled: true, tag_selectors: b.tag_selectors, scope_selectors: b.scope_selectors },
      ]);
    });

    it('the gate: moving an immutable tag is refused; creating it and re-pushing the same digest are not', async () => {
      const imm = service();
      const project = await createProject('gate');
      const r = await imm.create(project, rule('**', 'v*'));
      const gate = imm.gates;
      await gate.beforeTagMove?.('gate/app', 'v1', D1, current(undefined).read);
      await gate.beforeTagMove?.('gate/app', 'v1', D1, current(D1).read);
      await refused(gate.beforeTagMove?.('gate/app', 'v1', D2, current(D1).read) as Promise<void>, new RegExp(`^tag v1 is immutable \\(rule ${r.id} of project gate\\): gate/app:v1 points at ${D1}`));
      // A mutable tag is never looked up.
      const latest = current(D1);
      await gate.beforeTagMove?.('gate/app', 'latest', D2, latest.read);
      assert.equal(latest.calls(), 0);
    });

    it('the gate: deleting an immutable tag, or a manifest one points at, is refused; other tags and manifests are not', async () => {
      const imm = service();
      const project = await createProject('gate-del');
      await imm.create(project, rule('app', 'v*'));
      tags.set('gate-del/app', new Map([[D1, ['latest', 'v1']], [D2, ['dev']]]));
      tags.set('gate-del/web', new Map([[D1, ['v1']]]));
      const gate = imm.gates;
      await refused(gate.beforeTagDelete?.('gate-del/app', 'v1', D1) as Promise<void>, /^tag v1 is immutable .*gate-del\/app:v1 cannot be deleted/);
      await gate.beforeTagDelete?.('gate-del/app', 'latest', D1);
      await refused(gate.beforeManifestDelete?.('gate-del/app', D1) as Promise<void>, new RegExp(`^tag v1 is immutable .*gate-del/app@${D1} carries it`));
      await gate.beforeManifestDelete?.('gate-del/app', D2);
      tagReads = 0;
      // No rule covers gate-del/web: its tags are not even read.
      await gate.beforeManifestDelete?.('gate-del/web', D1);
      await gate.beforeTagDelete?.('gate-del/web', 'v1', D1);
      assert.equal(tagReads, 0);
      assert.deepEqual([...((await gate.protectedTags?.('gate-del/app', ['dev', 'v1', 'v2', 'latest'])) ?? [])], ['v1', 'v2']);
    });

    it('the gate: excludes, regex, several rules OR, disabled rules ignored, repositories outside projects untouched', async () => {
      const imm = service();
      const project = await createProject('gate-kinds');
      await imm.create(project, rule('**', 'dev-*', { tagExcludes: true, repoExcludes: false }));
      await imm.create(project, rule('tools/**', 'v\\d+\\.\\d+', { kind: 'regex' }));
      await imm.create(project, rule('**', 'latest', { disabled: true }));
      const cases: Array<[string, string, boolean]> = [
        ['gate-kinds/app', 'v1', true],
        ['gate-kinds/app', 'dev-3', false],
        ['gate-kinds/app', 'latest', true],
        ['gate-kinds/tools/lint', 'dev-1', false],
      ];
      for (const [repository, tag, immutable] of cases) assert.equal((await imm.ruleFor(repository, tag)) !== undefined, immutable, `${repository}:${tag}`);
      const other = await createProject('gate-kinds2');
      await imm.create(other, rule('tools/**', 'v\\d+\\.\\d+', { kind: 'regex' }));
      await imm.create(other, rule('**', 'latest', { disabled: true }));
      assert.equal(await imm.ruleFor('gate-kinds2/tools/lint', 'v1.2'), (await imm.list(other.id, [], 0, 1)).items[0]?.id);
      assert.equal(await imm.ruleFor('gate-kinds2/tools/lint', 'v1.2.3'), undefined, 'regex is anchored');
      assert.equal(await imm.ruleFor('gate-kinds2/app', 'latest'), undefined, 'disabled rule');
      assert.equal(await imm.ruleFor('no-such-project/app', 'v1'), undefined);
      assert.equal(await imm.ruleFor('toplevel', 'v1'), undefined);
    });

    it('compiled rules are cached per project: one read per project within the cache lifetime, none for repositories without a project', async () => {
      const imm = service();
      await imm.create(await createProject('cached'), rule('**', 'v*'));
      projectReads = 0;
      for (let i = 0; i < 50; i++) {
        await imm.gates.beforeTagMove?.(`cached/app${i % 5}`, `t${i}`, D1, current(undefined).read);
        await imm.gates.beforeTagMove?.(`nowhere/app${i % 5}`, `t${i}`, D1, current(undefined).read);
      }
      assert.equal(projectReads, 2, 'one read for cached, one for the missing project');
      await imm.gates.beforeTagMove?.('toplevel', 'v1', D1, current(D2).read);
      assert.equal(projectReads, 2, 'a repository without a project reads nothing');
    });

    it("a rule change here applies at once; another node's change within the cache lifetime", async () => {
      const here = service();
      const elsewhere = service();
      const project = await createProject('nodes');
      const r = await here.create(project, rule('**', 'v*'));
      await refused(here.gates.beforeTagDelete?.('nodes/app', 'v1', D1) as Promise<void>, /immutable/);
      await refused(elsewhere.gates.beforeTagDelete?.('nodes/app', 'v1', D1) as Promise<void>, /immutable/);
      await here.update(project, r.id, rule('**', 'v*', { disabled: true }));
      await here.gates.beforeTagDelete?.('nodes/app', 'v1', D1);
      // The other node still trusts what it compiled, until the lifetime ends.
      await refused(elsewhere.gates.beforeTagDelete?.('nodes/app', 'v1', D1) as Promise<void>, /immutable/);
      now += DEFAULT_RULE_CACHE_TTL_MS + 1;
      await elsewhere.gates.beforeTagDelete?.('nodes/app', 'v1', D1);
      await here.delete(project, r.id);
      await here.create(project, rule('app', 'stable'));
      await refused(here.gates.beforeTagDelete?.('nodes/app', 'stable', D1) as Promise<void>, /immutable/);
    });
  });
}
