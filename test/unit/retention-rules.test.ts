import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluateRetention, MAX_COUNT, MAX_DAYS, type RetentionCandidate, type RetentionPolicy, type RetentionRule, RetentionRuleError } from '../../src/retention/retention-rules.ts';
import { SelectorError } from '../../src/retention/selectors.ts';

const DAY = 24 * 60 * 60 * 1000;
const NOW = Date.UTC(2025, 0, 31, 12, 0, 0);
const daysAgo = (n: number): number => NOW - n * DAY;

function art(digest: string, tags: string[], pushedDaysAgo: number, pulledDaysAgo: number | null, repository = 'proj/app'): RetentionCandidate {
  return { repository, digest, tags, pushedAt: daysAgo(pushedDaysAgo), pulledAt: pulledDaysAgo === null ? null : daysAgo(pulledDaysAgo) };
}

function rule(template: string, params: Record<string, unknown> = {}, extra: Partial<RetentionRule> = {}): RetentionRule {
  return {
    template,
    params,
    tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: '**', extras: '{"untagged":true}' }],
    scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
    ...extra,
  };
}

function run(rules: RetentionRule[], candidates: RetentionCandidate[], isImmutable?: (r: string, t: string) => boolean) {
  const policy: RetentionPolicy = { algorithm: 'or', rules };
  return evaluateRetention(policy, candidates, isImmutable ? { now: NOW, isImmutable } : { now: NOW });
}

const digests = (list: { artifact: RetentionCandidate }[]): string[] => list.map((x) => x.artifact.digest).sort();

describe('retention templates', () => {
  const a = art('sha256:a', ['a'], 1, 10);
  const b = art('sha256:b', ['b'], 2, 1);
  const c = art('sha256:c', ['c'], 3, null);
  const d = art('sha256:d', ['d'], 4, 5);
  const all = [a, b, c, d];

  // [name, rule, retained digests]
  const cases: [string, RetentionRule, string[]][] = [
    ['latestPushedK 2 keeps the two newest pushes', rule('latestPushedK', { latestPushedK: 2 }), ['sha256:a', 'sha256:b']],
    ['latestPushedK 1', rule('latestPushedK', { latestPushedK: 1 }), ['sha256:a']],
    ['latestPushedK larger than the count keeps all', rule('latestPushedK', { latestPushedK: 100 }), ['sha256:a', 'sha256:b', 'sha256:c', 'sha256:d']],
    ['latestPulledN 2 keeps the two most recently pulled', rule('latestPulledN', { latestPulledN: 2 }), ['sha256:b', 'sha256:d']],
    ['latestPulledN 3: never-pulled is the oldest (a before c)', rule('latestPulledN', { latestPulledN: 3 }), ['sha256:a', 'sha256:b', 'sha256:d']],
    ['latestPulledN 4: never-pulled still fills the last slot', rule('latestPulledN', { latestPulledN: 4 }), ['sha256:a', 'sha256:b', 'sha256:c', 'sha256:d']],
    ['nDaysSinceLastPush 2 (boundary: pushed exactly 2 days ago is kept)', rule('nDaysSinceLastPush', { nDaysSinceLastPush: 2 }), ['sha256:a', 'sha256:b']],
    ['nDaysSinceLastPush 1', rule('nDaysSinceLastPush', { nDaysSinceLastPush: 1 }), ['sha256:a']],
    ['nDaysSinceLastPull 5 (boundary inclusive, never pulled not kept)', rule('nDaysSinceLastPull', { nDaysSinceLastPull: 5 }), ['sha256:b', 'sha256:d']],
    ['nDaysSinceLastPull 365 never keeps the never-pulled', rule('nDaysSinceLastPull', { nDaysSinceLastPull: 365 }), ['sha256:a', 'sha256:b', 'sha256:d']],
    ['always keeps everything selected', rule('always'), ['sha256:a', 'sha256:b', 'sha256:c', 'sha256:d']],
  ];
  for (const [name, r, expected] of cases) {
    it(name, () => {
      const result = run([r], all);
      assert.deepEqual(digests(result.retained), expected);
      const removed = all.map((x) => x.digest).filter((x) => !expected.includes(x));
      assert.deepEqual(digests(result.removed), removed);
      assert.deepEqual(result.outOfScope, []);
      for (const kept of result.retained) assert.deepEqual(kept.retainedBy, [{ index: 0, template: r.template }]);
      for (const gone of result.removed) assert.equal(gone.reason, 'not_retained');
    });
  }

  it('day boundary: one millisecond past N days is removed', () => {
    const justIn = { ...art('sha256:in', ['x'], 0, null), pushedAt: NOW - 7 * DAY };
    const justOut = { ...art('sha256:out', ['y'], 0, null), pushedAt: NOW - 7 * DAY - 1 };
    const result = run([rule('nDaysSinceLastPush', { nDaysSinceLastPush: 7 })], [justIn, justOut]);
    assert.deepEqual(digests(result.retained), ['sha256:in']);
    assert.deepEqual(digests(result.removed), ['sha256:out']);
  });

  it('pull-day boundary is inclusive too', () => {
    const justIn = { ...art('sha256:in', ['x'], 100, null), pulledAt: new Date(NOW - 3 * DAY) };
    const justOut = { ...art('sha256:out', ['y'], 100, null), pulledAt: new Date(NOW - 3 * DAY - 1) };
    const result = run([rule('nDaysSinceLastPull', { nDaysSinceLastPull: 3 })], [justIn, justOut]);
    assert.deepEqual(digests(result.retained), ['sha256:in']);
  });

  it('latestPushedK ties break deterministically (digest ascending), whatever the input order', () => {
    const x = art('sha256:x', ['x'], 1, null);
    const y = art('sha256:y', ['y'], 1, null);
    const z = art('sha256:z', ['z'], 1, null);
    for (const order of [[x, y, z], [z, y, x], [y, z, x]]) {
      assert.deepEqual(digests(run([rule('latestPushedK', { latestPushedK: 2 })], order).retained), ['sha256:x', 'sha256:y']);
    }
  });

  it('latestPulledN ties on pull time fall back to the newer push', () => {
    const older = { ...art('sha256:old', ['o'], 9, null), pulledAt: daysAgo(1) };
    const newer = { ...art('sha256:new', ['n'], 2, null), pulledAt: daysAgo(1) };
    assert.deepEqual(digests(run([rule('latestPulledN', { latestPulledN: 1 })], [older, newer]).retained), ['sha256:new']);
    // two never-pulled: the newer push wins the slot
    const p = art('sha256:p', ['p'], 5, null);
    const q = art('sha256:q', ['q'], 4, null);
    assert.deepEqual(digests(run([rule('latestPulledN', { latestPulledN: 1 })], [p, q]).retained), ['sha256:q']);
  });

  it('counting templates count per repository', () => {
    const candidates = [art('sha256:1', ['a'], 1, null, 'proj/one'), art('sha256:2', ['b'], 2, null, 'proj/one'), art('sha256:3', ['a'], 3, null, 'proj/two'), art('sha256:4', ['b'], 4, null, 'proj/two')];
    const result = run([rule('latestPushedK', { latestPushedK: 1 })], candidates);
    assert.deepEqual(digests(result.retained), ['sha256:1', 'sha256:3']);
    assert.deepEqual(digests(result.removed), ['sha256:2', 'sha256:4']);
  });

  it('counts only the artifacts the tag selector selects', () => {
    const candidates = [art('sha256:dev1', ['dev-1'], 1, null), art('sha256:v1', ['v1'], 5, null), art('sha256:v2', ['v2'], 6, null)];
    const r = rule('latestPushedK', { latestPushedK: 1 }, { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v*' }] });
    const result = run([r], candidates);
    // dev-1 is the newest push but not selected, so it takes no slot and is removed
    assert.deepEqual(digests(result.retained), ['sha256:v1']);
    assert.deepEqual(digests(result.removed), ['sha256:dev1', 'sha256:v2']);
  });
});

describe('combining rules', () => {
  const v1 = art('sha256:v1', ['v1'], 30, null);
  const v2 = art('sha256:v2', ['v2'], 20, null);
  const dev = art('sha256:dev', ['dev'], 1, 1);
  const old = art('sha256:old', ['old'], 90, 60);
  const all = [v1, v2, dev, old];
  const tagSel = (pattern: string) => [{ kind: 'doublestar' as const, decoration: 'matches' as const, pattern }];

  it('rules are ORed and each retained artifact lists every rule that kept it', () => {
    const rules = [
      rule('latestPushedK', { latestPushedK: 1 }, { id: 'newest-v', tag_selectors: tagSel('v*') }),
      rule('nDaysSinceLastPull', { nDaysSinceLastPull: 7 }, { id: 'recent-pull' }),
      rule('latestPushedK', { latestPushedK: 1 }, { id: 'newest' }),
    ];
    const result = run(rules, all);
    assert.deepEqual(digests(result.retained), ['sha256:dev', 'sha256:v2']);
    assert.deepEqual(digests(result.removed), ['sha256:old', 'sha256:v1']);
    const byDigest = new Map(result.retained.map((r) => [r.artifact.digest, r.retainedBy]));
    assert.deepEqual(byDigest.get('sha256:v2'), [{ index: 0, id: 'newest-v', template: 'latestPushedK' }]);
    assert.deepEqual(byDigest.get('sha256:dev'), [
      { index: 1, id: 'recent-pull', template: 'nDaysSinceLastPull' },
      { index: 2, id: 'newest', template: 'latestPushedK' },
    ]);
    for (const removed of result.removed) assert.match(removed.detail, /no enabled rule retained/);
  });

  it('disabled rules are ignored', () => {
    const rules = [rule('always', {}, { disabled: true }), rule('latestPushedK', { latestPushedK: 1 })];
    const result = run(rules, all);
    assert.deepEqual(digests(result.retained), ['sha256:dev']);
    assert.equal(result.removed.length, 3);
  });

  it('a policy whose rules are all disabled touches nothing', () => {
    const result = run([rule('always', {}, { disabled: true })], all);
    assert.deepEqual(result.retained, []);
    assert.deepEqual(result.removed, []);
    assert.equal(result.outOfScope.length, 4);
  });

  it('an excludes tag selector retains artifacts with a non-matching tag', () => {
    const r = rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'excludes', pattern: '{dev,old}' }] });
    const result = run([r], all);
    assert.deepEqual(digests(result.retained), ['sha256:v1', 'sha256:v2']);
  });
});

describe('untagged artifacts', () => {
  const tagged = art('sha256:t', ['v1'], 2, null);
  const untagged = art('sha256:u', [], 1, null);
  const cases: [string, string | undefined, string[], string[]][] = [
    ['matches ** with untagged=true retains them', '{"untagged":true}', ['sha256:t', 'sha256:u'], []],
    ['matches ** with untagged=false removes them', '{"untagged":false}', ['sha256:t'], ['sha256:u']],
    ['matches ** without extras keeps Harbor default (selected)', undefined, ['sha256:t', 'sha256:u'], []],
  ];
  for (const [name, extras, retained, removed] of cases) {
    it(name, () => {
      const r = rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: '**', ...(extras === undefined ? {} : { extras }) }] });
      const result = run([r], [tagged, untagged]);
      assert.deepEqual(digests(result.retained), retained);
      assert.deepEqual(digests(result.removed), removed);
    });
  }
  it('an untagged artifact takes a latestPushedK slot when selected', () => {
    const result = run([rule('latestPushedK', { latestPushedK: 1 })], [tagged, untagged]);
    assert.deepEqual(digests(result.retained), ['sha256:u']);
  });
});

describe('repository scope', () => {
  const inTeam = art('sha256:team', ['v1'], 1, null, 'proj/team/api');
  const inTeamOld = art('sha256:team-old', ['v0'], 9, null, 'proj/team/api');
  const other = art('sha256:other', ['v1'], 9, null, 'proj/other');
  const scoped = (pattern: string, decoration: 'repoMatches' | 'repoExcludes' = 'repoMatches') =>
    rule('latestPushedK', { latestPushedK: 1 }, { scope_selectors: { repository: [{ kind: 'doublestar', decoration, pattern }] } });

  it('repository selectors match the path without the project', () => {
    const result = run([scoped('team/**')], [inTeam, inTeamOld, other]);
    assert.deepEqual(digests(result.retained), ['sha256:team']);
    assert.deepEqual(digests(result.removed), ['sha256:team-old']);
    assert.deepEqual(result.outOfScope.map((x) => x.digest), ['sha256:other']);
  });

  it('the project name itself is not part of the matched path', () => {
    const result = run([scoped('proj/**')], [inTeam, other]);
    assert.deepEqual(result.retained, []);
    assert.deepEqual(result.removed, []);
    assert.equal(result.outOfScope.length, 2);
  });

  it('repoExcludes scopes everything else', () => {
    const result = run([scoped('team/**', 'repoExcludes')], [inTeam, inTeamOld, other]);
    assert.deepEqual(digests(result.retained), ['sha256:other']);
    assert.equal(result.outOfScope.length, 2);
  });

  it('a repository in scope of one rule loses artifacts no rule retains', () => {
    const rules = [scoped('team/**'), rule('always', {}, { scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: 'other' }] } })];
    const result = run(rules, [inTeam, inTeamOld, other]);
    assert.deepEqual(digests(result.retained), ['sha256:other', 'sha256:team']);
    assert.deepEqual(digests(result.removed), ['sha256:team-old']);
  });
});

describe('immutable tags are never removed', () => {
  const keep = art('sha256:new', ['v2'], 1, null);
  const frozen = art('sha256:frozen', ['v1', 'release-1'], 5, null);
  const plain = art('sha256:plain', ['v0'], 9, null);
  const isImmutable = (repository: string, tag: string) => repository === 'proj/app' && tag.startsWith('release-');

  it('protects an artifact no rule retained and names the immutable tags', () => {
    const result = run([rule('latestPushedK', { latestPushedK: 1 })], [keep, frozen, plain], isImmutable);
    assert.deepEqual(digests(result.removed), ['sha256:plain']);
    const protectedOne = result.retained.find((r) => r.artifact.digest === 'sha256:frozen');
    assert.ok(protectedOne);
    assert.equal(protectedOne.protectedByImmutability, true);
    assert.deepEqual(protectedOne.retainedBy, []);
    assert.deepEqual(protectedOne.immutableTags, ['release-1']);
    const kept = result.retained.find((r) => r.artifact.digest === 'sha256:new');
    assert.equal(kept?.protectedByImmutability, false);
  });

  it('an immutable artifact retained by a rule is reported as rule-retained', () => {
    const result = run([rule('always')], [frozen], isImmutable);
    assert.equal(result.retained[0]?.protectedByImmutability, false);
    assert.deepEqual(result.retained[0]?.immutableTags, ['release-1']);
    assert.equal(result.retained[0]?.retainedBy.length, 1);
  });
});

describe('policy validation', () => {
  const refused: [string, RetentionRule, string, RegExp][] = [
    ['K = 0', rule('latestPushedK', { latestPushedK: 0 }), 'invalid_param', /at least 1/],
    ['negative K', rule('latestPushedK', { latestPushedK: -3 }), 'invalid_param', /at least 1/],
    ['K too large', rule('latestPushedK', { latestPushedK: MAX_COUNT + 1 }), 'invalid_param', /at most/],
    ['fractional N', rule('latestPulledN', { latestPulledN: 1.5 }), 'invalid_param', /integer/],
    ['string N', rule('latestPulledN', { latestPulledN: '5' }), 'invalid_param', /integer/],
    ['missing parameter', rule('nDaysSinceLastPush', {}), 'invalid_param', /needs the parameter/],
    ['days = 0', rule('nDaysSinceLastPull', { nDaysSinceLastPull: 0 }), 'invalid_param', /at least 1/],
    ['days too large', rule('nDaysSinceLastPush', { nDaysSinceLastPush: MAX_DAYS + 1 }), 'invalid_param', /at most/],
    ['unknown template', rule('latestK', { latestK: 3 }), 'unknown_template', /unknown template "latestK"/],
    ['unknown action', rule('always', {}, { action: 'delete' as never }), 'invalid_rule', /unknown action/],
  ];
  for (const [name, r, code, message] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => run([rule('always'), r], []),
        (err: unknown) => err instanceof RetentionRuleError && err.code === code && err.ruleIndex === 1 && message.test(err.message),
      );
    });
  }
  it('even a disabled rule must be valid', () => {
    assert.throws(() => run([rule('latestPushedK', { latestPushedK: 0 }, { disabled: true })], []), RetentionRuleError);
  });
  it('accepts the bounds themselves', () => {
    const result = run([rule('latestPushedK', { latestPushedK: MAX_COUNT }), rule('nDaysSinceLastPush', { nDaysSinceLastPush: MAX_DAYS })], [art('sha256:a', ['a'], 1, null)]);
    assert.equal(result.retained.length, 1);
  });
  it('refuses more than 15 rules', () => {
    assert.throws(() => run(Array.from({ length: 16 }, () => rule('always')), []), (err: unknown) => err instanceof RetentionRuleError && err.code === 'too_many_rules');
  });
  it('refuses an unknown algorithm', () => {
    assert.throws(() => evaluateRetention({ algorithm: 'and' as never, rules: [] }, [], { now: NOW }), (err: unknown) => err instanceof RetentionRuleError && err.code === 'invalid_algorithm');
  });
  it('surfaces a bad selector pattern as a SelectorError', () => {
    const r = rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: '[oops' }] });
    assert.throws(() => run([r], []), (err: unknown) => err instanceof SelectorError && err.code === 'invalid_pattern');
  });
});
