import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileDoublestar, compilePattern, compileRepositorySelector, compileTagSelector, MAX_PATTERN_LENGTH, matchDoublestar, repositoryPathInProject, type Selector, SelectorError } from '../../src/retention/selectors.ts';

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof SelectorError && err.code === code && err.message.length > 0);
}

describe('doublestar matching', () => {
  // [pattern, value, expected]
  const cases: [string, string, boolean][] = [
    ['', 'anything/at/all', true],
    ['latest', 'latest', true],
    ['latest', 'latest2', false],
    ['latest', 'xlatest', false],
    ['*', 'v1.0', true],
    ['*', '', true],
    ['*', 'a/b', false],
    ['v*', 'v1.2.3', true],
    ['v*', 'x1', false],
    ['*-rc', '1.0-rc', true],
    ['a/*', 'a/b', true],
    ['a/*', 'a/b/c', false],
    ['a/*/c', 'a/b/c', true],
    ['a/*/c', 'a/b/x/c', false],
    // ** at start
    ['**', 'a/b/c', true],
    ['**', '', true],
    ['**/app', 'app', true],
    ['**/app', 'team/app', true],
    ['**/app', 'x/y/app', true],
    ['**/app', 'x/myapp', false],
    // ** in the middle
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/b', true],
    ['a/**/b', 'a/x/y/z/b', true],
    ['a/**/b', 'a/x/y/z/c', false],
    ['a/**/b', 'ab', false],
    // ** at the end
    ['team/**', 'team/app', true],
    ['team/**', 'team/a/b/c', true],
    ['team/**', 'team', true],
    ['team/**', 'teamx/app', false],
    ['team/**', 'other/team/app', false],
    // ** not a whole segment acts like *
    ['a**b', 'axyb', true],
    ['a**b', 'ax/yb', false],
    // ?
    ['v?', 'v1', true],
    ['v?', 'v12', false],
    ['v?', 'v', false],
    ['a?b', 'a/b', false],
    // braces
    ['{latest,stable}', 'latest', true],
    ['{latest,stable}', 'stable', true],
    ['{latest,stable}', 'beta', false],
    ['v{1,2}.*', 'v2.9', true],
    ['v{1,2}.*', 'v3.9', false],
    ['{a,b{c,d}}x', 'bdx', true],
    ['{a,b{c,d}}x', 'bx', false],
    ['{,v}1', '1', true],
    ['{,v}1', 'v1', true],
    ['{team/**,lib}', 'team/a/b', true],
    ['{team/**,lib}', 'lib', true],
    ['{team/**,lib}', 'lib/x', false],
    // classes
    ['v[0-9]', 'v7', true],
    ['v[0-9]', 'va', false],
    ['[abc]x', 'bx', true],
    ['[abc]x', 'dx', false],
    ['[!abc]x', 'dx', true],
    ['[!abc]x', 'ax', false],
    ['[^abc]x', 'dx', true],
    ['[^abc]x', 'cx', false],
    ['a[!x]b', 'a/b', false],
    ['a[!x]b', 'ayb', true],
    ['[-a]', '-', true],
    ['[a-]', '-', true],
    ['[\\]]', ']', true],
    ['[.]x', '.x', true],
    ['[.]x', 'ax', false],
    // regex metacharacters in literal parts are literal
    ['v1.0', 'v1.0', true],
    ['v1.0', 'v1x0', false],
    ['1.0+build', '1.0+build', true],
    ['1.0+build', '1.00build', false],
    ['a(b)|c', 'a(b)|c', true],
    ['a(b)|c', 'c', false],
    ['^x$', '^x$', true],
    ['^x$', 'x', false],
    ['a-b_c', 'a-b_c', true],
    ['$1', '$1', true],
    // a stray } or , outside braces is literal (as in doublestar)
    ['a}', 'a}', true],
    ['a,b', 'a,b', true],
    ['a,b', 'a', false],
    // escapes
    ['\\*', '*', true],
    ['\\*', 'a', false],
    ['\\{a,b\\}', '{a,b}', true],
    ['\\?', '?', true],
    ['\\?', 'x', false],
    // literal newline safety: * does not stop at other characters
    ['*', 'a\nb', true],
  ];
  for (const [pattern, value, expected] of cases) {
    it(`${JSON.stringify(pattern)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(value)}`, () => {
      assert.equal(matchDoublestar(pattern, value), expected);
    });
  }

  const invalid: [string, string][] = [
    ['[abc', 'invalid_pattern'],
    ['v[', 'invalid_pattern'],
    ['[]', 'invalid_pattern'],
    ['[z-a]', 'invalid_pattern'],
    ['{a,b', 'invalid_pattern'],
    ['abc\\', 'invalid_pattern'],
    ['x'.repeat(MAX_PATTERN_LENGTH + 1), 'pattern_too_long'],
  ];
  for (const [pattern, code] of invalid) {
    it(`refuses ${JSON.stringify(pattern.slice(0, 20))} with ${code}`, () => throwsCode(() => compileDoublestar(pattern), code));
  }
  it('accepts a pattern of exactly the maximum length', () => {
    assert.equal(matchDoublestar('x'.repeat(MAX_PATTERN_LENGTH), 'x'.repeat(MAX_PATTERN_LENGTH)), true);
  });
});

describe('regex patterns', () => {
  const cases: [string, string, boolean][] = [
    ['v\\d+', 'v12', true],
    ['v\\d+', 'v12-rc', false], // anchored at the end
    ['v\\d+', 'xv12', false], // anchored at the start
    ['a|b', 'a', true],
    ['a|b', 'ab', false], // the alternation stays inside the anchors
    ['.*-rc\\d', '1.0-rc1', true],
    ['release-.*', 'release-', true],
    ['', 'anything', true],
  ];
  for (const [pattern, value, expected] of cases) {
    it(`/${pattern}/ ${expected ? 'matches' : 'does not match'} ${JSON.stringify(value)}`, () => {
      assert.equal(compilePattern('regex', pattern)(value), expected);
    });
  }
  for (const pattern of ['(', 'a[', '*a', '\\', 'a{2,1}', '(?<n>a)\\k<m>']) {
    it(`refuses the invalid regex ${JSON.stringify(pattern)}`, () => {
      assert.throws(
        () => compilePattern('regex', pattern),
        (err: unknown) => err instanceof SelectorError && err.code === 'invalid_pattern' && err.message.includes('not a valid regular expression'),
      );
    });
  }
  it('refuses a regex over 256 characters', () => throwsCode(() => compilePattern('regex', 'a'.repeat(257)), 'pattern_too_long'));
  it('refuses an unknown kind', () => throwsCode(() => compilePattern('glob' as never, 'x'), 'invalid_kind'));
});

describe('tag selectors', () => {
  const sel = (decoration: 'matches' | 'excludes', pattern: string, extras?: Selector['extras']): Selector => ({ kind: 'doublestar', decoration, pattern, ...(extras === undefined ? {} : { extras }) });
  // [selector, tags, selected]
  const cases: [string, Selector, string[], boolean][] = [
    ['matches: one of several tags matches', sel('matches', 'v*'), ['latest', 'v1'], true],
    ['matches: no tag matches', sel('matches', 'v*'), ['latest', 'dev'], false],
    ['excludes: every tag matches the pattern', sel('excludes', 'v*'), ['v1', 'v2'], false],
    ['excludes: one tag does not match (Harbor any-tag rule)', sel('excludes', 'v*'), ['v1', 'latest'], true],
    ['excludes: no tag matches', sel('excludes', 'v*'), ['latest'], true],
    ['matches, untagged, no extras (Harbor default true)', sel('matches', 'v*'), [], true],
    ['excludes, untagged, no extras (Harbor default false → selected)', sel('excludes', 'v*'), [], true],
    ['matches, untagged, untagged=false', sel('matches', '**', '{"untagged":false}'), [], false],
    ['matches, untagged, untagged=true', sel('matches', 'v*', '{"untagged":true}'), [], true],
    ['excludes, untagged, untagged=true', sel('excludes', 'v*', '{"untagged":true}'), [], false],
    ['excludes, untagged, untagged=false', sel('excludes', 'v*', { untagged: false }), [], true],
    ['extras object form', sel('matches', 'v*', { untagged: false }), [], false],
    ['extras without untagged keeps the default', sel('matches', 'v*', '{}'), [], true],
    ['extras do not affect tagged artifacts', sel('matches', 'v*', '{"untagged":true}'), ['latest'], false],
  ];
  for (const [name, selector, tags, expected] of cases) {
    it(name, () => assert.equal(compileTagSelector(selector).selects(tags), expected));
  }
  it('acceptsTag inverts for excludes', () => {
    assert.equal(compileTagSelector(sel('matches', 'v*')).acceptsTag('v1'), true);
    assert.equal(compileTagSelector(sel('excludes', 'v*')).acceptsTag('v1'), false);
    assert.equal(compileTagSelector(sel('excludes', 'v*')).acceptsTag('dev'), true);
  });
  it('works with regex tag selectors', () => {
    const s = compileTagSelector({ kind: 'regex', decoration: 'matches', pattern: 'v\\d+\\.\\d+' });
    assert.equal(s.selects(['v1.2']), true);
    assert.equal(s.selects(['v1.2.3']), false);
  });
  it('refuses malformed extras', () => {
    throwsCode(() => compileTagSelector(sel('matches', 'v*', '{untagged')), 'invalid_extras');
    throwsCode(() => compileTagSelector(sel('matches', 'v*', '[true]')), 'invalid_extras');
    throwsCode(() => compileTagSelector(sel('matches', 'v*', '{"untagged":"yes"}')), 'invalid_extras');
  });
  it('refuses a repository decoration on a tag selector', () => {
    throwsCode(() => compileTagSelector({ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }), 'invalid_decoration');
  });
  it('refuses an invalid pattern at compile time', () => throwsCode(() => compileTagSelector(sel('matches', '[x')), 'invalid_pattern'));
});

describe('repository selectors', () => {
  it('strips the project like Harbor ParseRepository', () => {
    assert.equal(repositoryPathInProject('library/ubuntu'), 'ubuntu');
    assert.equal(repositoryPathInProject('library/team/app'), 'team/app');
    assert.equal(repositoryPathInProject('solo'), 'solo');
  });
  const cases: [Selector, string, boolean][] = [
    [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }, 'team/app', true],
    [{ kind: 'doublestar', decoration: 'repoMatches', pattern: 'team/*' }, 'team/app', true],
    [{ kind: 'doublestar', decoration: 'repoMatches', pattern: 'team/*' }, 'team/a/b', false],
    [{ kind: 'doublestar', decoration: 'repoExcludes', pattern: 'team/**' }, 'team/a/b', false],
    [{ kind: 'doublestar', decoration: 'repoExcludes', pattern: 'team/**' }, 'other', true],
    [{ kind: 'doublestar', decoration: 'matches', pattern: 'app' }, 'app', true],
    [{ kind: 'doublestar', decoration: 'excludes', pattern: 'app' }, 'app', false],
    [{ kind: 'regex', decoration: 'repoMatches', pattern: 'team/.+' }, 'team/x/y', true],
  ];
  for (const [selector, path, expected] of cases) {
    it(`${selector.decoration} ${selector.kind} ${JSON.stringify(selector.pattern)} on ${JSON.stringify(path)} → ${expected}`, () => {
      assert.equal(compileRepositorySelector(selector).selects(path), expected);
    });
  }
  it('refuses an unknown decoration', () => throwsCode(() => compileRepositorySelector({ kind: 'doublestar', decoration: 'nsMatches' as never, pattern: '**' }), 'invalid_decoration'));
});

describe('user patterns cannot stall the process', () => {
  // Without V8's linear-time fallback each of these takes minutes on a backtracking engine.
  const slowInput = 'a'.repeat(40);
  const cases: [Selector['kind'], string, string][] = [
    ['regex', '(a+)+b', slowInput],
    ['regex', '(a|aa)*c', slowInput],
    ['regex', '.*.*.*.*.*.*.*.*.*!', 'a'.repeat(120)],
    ['doublestar', '*?*?*?*?*?*?*?*?*?*?x', 'a'.repeat(120)],
    ['doublestar', '*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*!', 'a'.repeat(120)],
  ];
  for (const [kind, pattern, value] of cases) {
    it(`${kind} ${JSON.stringify(pattern)} answers at once`, () => {
      const match = compilePattern(kind, pattern);
      const started = performance.now();
      assert.equal(match(value), false);
      assert.ok(performance.now() - started < 2000, `matching took ${Math.round(performance.now() - started)} ms`);
    });
  }
  it('refuses what the linear-time engine cannot run: backreferences and lookarounds', () => {
    for (const pattern of ['(a+)\\1', '(?<x>a)\\k<x>', 'v(?=1)', 'v(?!1)', '(?<=v)1', '(?<!v)1', '\\p{L}+', '\\u{61}']) {
      throwsCode(() => compilePattern('regex', pattern), 'invalid_pattern');
    }
    // An escaped backslash before a digit is no backreference.
    assert.equal(compilePattern('regex', 'a\\\\1')('a\\1'), true);
  });
  it('a doublestar class never matches the separator, also when a range spans it', () => {
    assert.equal(matchDoublestar('a[!-~]b', 'a/b'), false);
    assert.equal(matchDoublestar('a[!-~]b', 'a.b'), true);
    assert.equal(matchDoublestar('a[!-~]b', 'a0b'), true);
    assert.equal(matchDoublestar('a[/]b', 'a/b'), false);
    assert.equal(matchDoublestar('a[!/]b', 'a/b'), false);
  });
});
