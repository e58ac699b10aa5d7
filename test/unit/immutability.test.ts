import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileImmutableRules, type ImmutableRule, immutableTagsOf, isImmutable } from '../../src/retention/immutability.ts';
import { SelectorError } from '../../src/retention/selectors.ts';

function immRule(repoPattern: string, tagPattern: string, opts: { repoExcludes?: boolean; tagExcludes?: boolean; disabled?: boolean } = {}): ImmutableRule {
  return {
    disabled: opts.disabled ?? false,
    scope_selectors: { repository: [{ kind: 'doublestar', decoration: opts.repoExcludes ? 'repoExcludes' : 'repoMatches', pattern: repoPattern }] },
    tag_selectors: [{ kind: 'doublestar', decoration: opts.tagExcludes ? 'excludes' : 'matches', pattern: tagPattern }],
  };
}

describe('immutability matrix', () => {
  // [name, rules, repository, tag, immutable]
  const cases: [string, ImmutableRule[], string, string, boolean][] = [
    ['repo and tag match', [immRule('**', 'v*')], 'proj/app', 'v1', true],
    ['tag does not match', [immRule('**', 'v*')], 'proj/app', 'latest', false],
    ['repo does not match', [immRule('team/**', 'v*')], 'proj/app', 'v1', false],
    ['repo path is matched without the project', [immRule('team/**', 'v*')], 'proj/team/api', 'v1', true],
    ['the project prefix is not part of the path', [immRule('proj/*', 'v*')], 'proj/app', 'v1', false],
    ['repoExcludes: other repositories', [immRule('app', 'v*', { repoExcludes: true })], 'proj/web', 'v1', true],
    ['repoExcludes: the excluded repository', [immRule('app', 'v*', { repoExcludes: true })], 'proj/app', 'v1', false],
    ['tag excludes: a non-matching tag is immutable', [immRule('**', 'dev-*', { tagExcludes: true })], 'proj/app', 'v1', true],
    ['tag excludes: a matching tag is mutable', [immRule('**', 'dev-*', { tagExcludes: true })], 'proj/app', 'dev-3', false],
    ['disabled rule is ignored', [immRule('**', '**', { disabled: true })], 'proj/app', 'v1', false],
    ['rules OR: second rule matches', [immRule('web', '**'), immRule('**', 'release-*')], 'proj/app', 'release-2', true],
    ['rules OR: none matches', [immRule('web', '**'), immRule('**', 'release-*')], 'proj/app', 'v2', false],
    ['no rules', [], 'proj/app', 'v1', false],
    ['rule without repository selectors matches nothing (Harbor)', [{ tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: '**' }] }], 'proj/app', 'v1', false],
    ['rule without tag selectors matches nothing (Harbor)', [{ scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] } }], 'proj/app', 'v1', false],
    ['braces in the tag pattern', [immRule('**', '{latest,stable}')], 'proj/app', 'stable', true],
    ['regex tag selector', [{ scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] }, tag_selectors: [{ kind: 'regex', decoration: 'matches', pattern: 'v\\d+\\.\\d+\\.\\d+' }] }], 'proj/app', 'v1.2.3', true],
    ['regex is anchored', [{ scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] }, tag_selectors: [{ kind: 'regex', decoration: 'matches', pattern: 'v\\d+' }] }], 'proj/app', 'v1-rc', false],
  ];
  for (const [name, rules, repository, tag, expected] of cases) {
    it(name, () => {
      assert.equal(isImmutable(repository, tag, rules), expected);
      assert.equal(compileImmutableRules(rules).isImmutable(repository, tag), expected);
    });
  }
});

describe('immutableTagsOf', () => {
  const rules = [immRule('**', 'release-*'), immRule('app', 'latest')];
  it('lists only the immutable tags, in tag order', () => {
    assert.deepEqual(immutableTagsOf({ repository: 'proj/app', tags: ['dev', 'latest', 'release-1', 'v1'] }, rules), ['latest', 'release-1']);
  });
  it('depends on the repository', () => {
    assert.deepEqual(immutableTagsOf({ repository: 'proj/web', tags: ['latest', 'release-1'] }, rules), ['release-1']);
  });
  it('an untagged artifact has no immutable tags', () => {
    assert.deepEqual(immutableTagsOf({ repository: 'proj/app', tags: [] }, rules), []);
  });
  it('an invalid pattern is a SelectorError', () => {
    assert.throws(() => isImmutable('proj/app', 'v1', [immRule('**', '{v1')]), (err: unknown) => err instanceof SelectorError && err.code === 'invalid_pattern');
  });
});
