/**
 * The retention policy envelope (src/retention/policy.ts) and the per-repository plan
 * (src/retention/plan.ts): what the API accepts and refuses, and how a repository's rows become
 * candidates, kept and removed artifacts and a deletion order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planRepository } from '../../src/retention/plan.ts';
import { normalizePolicy, type PolicyInput, RetentionPolicyError, type RuleInput } from '../../src/retention/policy.ts';
import { MAX_COUNT, MAX_RULES } from '../../src/retention/retention-rules.ts';
import { MAX_PATTERN_LENGTH } from '../../src/retention/selectors.ts';
import type { RepositoryFacts } from '../../src/retention/store.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2030, 0, 31);

const rule = (template: string, params: Record<string, unknown> = {}, extra: Partial<RuleInput> = {}): RuleInput => ({
  template,
  params,
  tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: '**' }],
  scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
  ...extra,
});
const policy = (rules: RuleInput[], cron = '', extra: Partial<PolicyInput> = {}): PolicyInput => ({
  algorithm: 'or',
  rules,
  trigger: { kind: 'Schedule', settings: { cron } },
  scope: { level: 'project', ref: 7 },
  ...extra,
});

describe('retention policy: accepted', () => {
  it('normalises a Harbor policy: rule ids by position, defaults filled, extras kept as JSON text, cron trimmed', () => {
    const stored = normalizePolicy(
      policy(
        [
          rule('latestPushedK', { latestPushedK: 3 }, { id: 99, tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v*', extras: { untagged: false } }] }),
          rule('always', {}, { disabled: true, priority: 2 }),
        ],
        ' 0 0 3 * * * ',
      ),
      NOW,
    );
    assert.deepEqual(stored.trigger, { kind: 'Schedule', settings: { cron: '0 0 3 * * *' } });
    assert.deepEqual(stored.scope, { level: 'project', ref: 7 });
    assert.deepEqual(
      stored.rules.map((r) => [r.id, r.priority, r.disabled, r.action, r.template]),
      [
        [1, 0, false, 'retain', 'latestPushedK'],
        [2, 2, true, 'retain', 'always'],
      ],
    );
    assert.equal(stored.rules[0]?.tag_selectors[0]?.extras, '{"untagged":false}');
  });

  it('accepts no trigger (on demand only), an empty cron and regex selectors', () => {
    const stored = normalizePolicy({ rules: [rule('always', {}, { tag_selectors: [{ kind: 'regex', decoration: 'matches', pattern: 'v[0-9]+' }] })], scope: { level: 'project', ref: 1 } }, NOW);
    assert.equal(stored.trigger.settings.cron, '');
    assert.equal(stored.algorithm, 'or');
  });
});

describe('retention policy: refused with a message naming the problem', () => {
  const longPattern = 'a'.repeat(MAX_PATTERN_LENGTH + 1);
  const cases: Array<[string, PolicyInput, RegExp, 'invalid' | 'conflict']> = [
    ['an invalid cron expression', policy([rule('always')], 'every day at noon'), /cron/, 'invalid'],
    ['a cron with six fields out of range', policy([rule('always')], '0 0 25 * * *'), /cron/, 'invalid'],
    ['an unknown template', policy([rule('keepEverything')]), /unknown template "keepEverything"/, 'invalid'],
    ['a count of 0', policy([rule('latestPushedK', { latestPushedK: 0 })]), /at least 1/, 'invalid'],
    ['a count past the maximum', policy([rule('latestPulledN', { latestPulledN: MAX_COUNT + 1 })]), new RegExp(`at most ${MAX_COUNT}`), 'invalid'],
    ['a count that is text', policy([rule('latestPushedK', { latestPushedK: '3' })]), /must be an integer/, 'invalid'],
    ['a missing parameter', policy([rule('nDaysSinceLastPush')]), /needs the parameter nDaysSinceLastPush/, 'invalid'],
    ['a parameter of another template', policy([rule('always', { latestPushedK: 3 })]), /takes no parameters/, 'invalid'],
    ['a bad regular expression', policy([rule('always', {}, { tag_selectors: [{ kind: 'regex', decoration: 'matches', pattern: 'v(' }] })]), /not a valid regular expression/, 'invalid'],
    ['an unterminated doublestar class', policy([rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v[0-9' }] })]), /unterminated/, 'invalid'],
    ['a pattern that is too long', policy([rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: longPattern }] })]), /longer than/, 'invalid'],
    ['an unknown selector kind', policy([rule('always', {}, { tag_selectors: [{ kind: 'glob', decoration: 'matches', pattern: 'x' }] })]), /unknown selector kind/, 'invalid'],
    ['a repository decoration on a tag selector', policy([rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: 'x' }] })]), /decoration/, 'invalid'],
    ['malformed extras', policy([rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'x', extras: '{untagged' }] })]), /extras/, 'invalid'],
    ['an unknown scope selector key', policy([rule('always', {}, { scope_selectors: { label: [] } })]), /scope_selectors/, 'invalid'],
    ['too many rules', policy(Array.from({ length: MAX_RULES + 1 }, (_, i) => rule('latestPushedK', { latestPushedK: i + 1 }))), new RegExp(`at most ${MAX_RULES} rules`), 'invalid'],
    ['an action other than retain', policy([rule('always', {}, { action: 'delete' })]), /unknown action/, 'invalid'],
    ['another algorithm', policy([rule('always')], '', { algorithm: 'and' }), /unknown algorithm/, 'invalid'],
    ['a scope other than a project', policy([rule('always')], '', { scope: { level: 'system', ref: 0 } }), /scope.level/, 'invalid'],
    ['a trigger kind other than Schedule', policy([rule('always')], '', { trigger: { kind: 'Event' } }), /trigger.kind/, 'invalid'],
    ['two identical rules (Harbor: a conflict)', policy([rule('latestPushedK', { latestPushedK: 2 }, { id: 1 }), rule('latestPushedK', { latestPushedK: 2 }, { id: 2 })]), /rule 1 is the same as rule 0/, 'conflict'],
  ];
  for (const [what, input, message, code] of cases) {
    it(what, () => {
      assert.throws(
        () => normalizePolicy(input, NOW),
        (err: unknown) => err instanceof RetentionPolicyError && message.test(err.message) && err.code === code,
      );
    });
  }
});

/** A repository of manifests pushed a day apart (m0 oldest), each with the tags given. */
function facts(spec: Array<{ tags?: string[]; pulledDaysAgo?: number; subject?: number; children?: number[] }>): RepositoryFacts {
  const digest = (i: number) => `sha256:${String(i).padStart(64, '0')}`;
  return {
    manifests: spec.map((s, i) => ({ digest: digest(i), createdAt: NOW - (spec.length - i) * DAY, pulledAt: s.pulledDaysAgo === undefined ? null : NOW - s.pulledDaysAgo * DAY, subjectDigest: s.subject === undefined ? null : digest(s.subject) })),
    tags: spec.flatMap((s, i) => (s.tags ?? []).map((name) => ({ name, digest: digest(i), updatedAt: NOW - (spec.length - i) * DAY }))),
    children: spec.flatMap((s, i) => (s.children ?? []).map((c) => ({ parent: digest(i), child: digest(c) }))),
  };
}
const d = (i: number) => `sha256:${String(i).padStart(64, '0')}`;
const stored = (rules: RuleInput[]) => normalizePolicy(policy(rules), NOW).rules;

describe('retention plan of one repository', () => {
  it('latestPushedK keeps the newest K; the rest is removed, newest first', () => {
    const plan = planRepository('p/app', facts([{ tags: ['a'] }, { tags: ['b'] }, { tags: ['c'] }, { tags: ['d'] }]), stored([rule('latestPushedK', { latestPushedK: 2 })]), { now: NOW });
    assert.equal(plan.inScope, true);
    assert.deepEqual(
      plan.artifacts.map((a) => [a.tags[0], a.action]),
      [
        ['d', 'retain'],
        ['c', 'retain'],
        ['b', 'remove'],
        ['a', 'remove'],
      ],
    );
    assert.match(plan.artifacts[0]?.reason ?? '', /rule 1 \(latestPushedK\)/);
  });

  it('a tag pushed later makes an old artifact new again (push time is the latest of artifact and tags)', () => {
    const f = facts([{ tags: ['old'] }, { tags: ['mid'] }, { tags: ['new'] }]);
    (f.tags[0] as { updatedAt: number }).updatedAt = NOW;
    const plan = planRepository('p/app', f, stored([rule('latestPushedK', { latestPushedK: 1 })]), { now: NOW });
    assert.deepEqual(plan.removed.map((a) => a.tags[0]).sort(), ['mid', 'new']);
  });

  it('accessories and untagged index children are not candidates; a tagged child is', () => {
    const plan = planRepository(
      'p/app',
      facts([{}, { tags: ['arm'] }, { tags: ['multi'], children: [0, 1] }, { subject: 2 }]),
      stored([rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'nothing' }] })]),
      { now: NOW },
    );
    assert.deepEqual(plan.artifacts.map((a) => a.digest).sort(), [d(1), d(2)]);
    // The index goes first, then its tagged child.
    assert.deepEqual(
      plan.removed.map((a) => a.digest),
      [d(2), d(1)],
    );
  });

  it('an artifact a kept index references is kept, with the reason', () => {
    const plan = planRepository('p/app', facts([{ tags: ['child'] }, { tags: ['keep'], children: [0] }]), stored([rule('always', {}, { tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'keep' }] })]), {
      now: NOW,
    });
    assert.deepEqual(plan.removed, []);
    assert.match(plan.artifacts.find((a) => a.digest === d(0))?.reason ?? '', /referenced by the index/);
  });

  it('immutable tags keep their artifact; the reason names the tag', () => {
    const plan = planRepository('p/app', facts([{ tags: ['frozen'] }, { tags: ['x'] }]), stored([rule('latestPushedK', { latestPushedK: 1 })]), {
      now: NOW,
      isImmutable: (_repository, tag) => tag === 'frozen',
    });
    assert.deepEqual(plan.removed, []);
    assert.match(plan.artifacts.find((a) => a.tags[0] === 'frozen')?.reason ?? '', /immutable \(tag frozen\)/);
  });

  it('a repository no rule selects is out of scope', () => {
    const plan = planRepository('p/app', facts([{ tags: ['a'] }]), stored([rule('always', {}, { scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: 'other' }] } })]), { now: NOW });
    assert.deepEqual([plan.inScope, plan.artifacts.length, plan.removed.length], [false, 0, 0]);
  });

  it('latestPulledN and nDaysSinceLastPull read the recorded pull times', () => {
    const f = facts([{ tags: ['a'], pulledDaysAgo: 1 }, { tags: ['b'], pulledDaysAgo: 9 }, { tags: ['c'] }]);
    const byPull = planRepository('p/app', f, stored([rule('latestPulledN', { latestPulledN: 1 })]), { now: NOW });
    assert.deepEqual(
      byPull.removed.map((a) => a.tags[0]),
      ['c', 'b'],
    );
    const byDays = planRepository('p/app', f, stored([rule('nDaysSinceLastPull', { nDaysSinceLastPull: 10 })]), { now: NOW });
    assert.deepEqual(
      byDays.removed.map((a) => a.tags[0]),
      ['c'],
    );
  });
});
