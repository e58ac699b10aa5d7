/**
 * Harbor's selector model for tag retention and tag immutability: a selector is
 * `{kind, decoration, pattern, extras}`. Kinds: `doublestar` (Harbor's only kind, Go's
 * github.com/bmatcuk/doublestar) and `regex` (a Berth extension: anchored full match).
 *
 * Harbor behaviours followed (goharbor/harbor src/lib/selector/selectors/doublestar/selector.go):
 * - an empty pattern matches everything;
 * - `matches`: a tagged artifact is selected when at least one of its tags matches;
 *   `excludes`: a tagged artifact is selected when at least one of its tags does NOT match;
 * - untagged artifacts: the `untagged` extra says "an untagged artifact counts as matching the
 *   pattern", so `matches` + untagged selects it and `excludes` + untagged leaves it out. When the
 *   extras are absent Harbor defaults to untagged=true for `matches` and false for `excludes`
 *   (so by default both decorations select untagged artifacts). Berth refuses malformed extras
 *   instead of silently ignoring them.
 * - repository selectors (`repoMatches`/`repoExcludes`) match the repository path WITHOUT the
 *   project prefix: Harbor's retention launcher builds candidates with
 *   `utils.ParseRepository(r.Name)`, which splits at the first `/` (src/pkg/retention/launcher.go).
 *   So in project `library`, repository `library/team/app` is matched as `team/app`.
 */

import { setFlagsFromString } from 'node:v8';

// Patterns come from users (retention and immutability rules) and run on this process's event
// loop. V8's backtracking engine can take exponential time on an ambiguous pattern ("(a+)+b",
// "*?*?*?*x"); with this flag V8 switches a match that backtracks too much to its linear-time
// engine, with the same result. That engine has no backreferences or lookarounds, which
// compileRegex therefore refuses, and no unicode mode, so patterns compile without the `u` flag
// (tags and repository names are ASCII). Process-wide, and harmless to every other regular
// expression: only a match that would backtrack excessively changes engine.
setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

export type SelectorKind = 'doublestar' | 'regex';
export type TagDecoration = 'matches' | 'excludes';
export type RepositoryDecoration = 'repoMatches' | 'repoExcludes';
export type SelectorDecoration = TagDecoration | RepositoryDecoration;

/** Harbor sends extras as a JSON string (`{"untagged":true}`); an object is accepted too. */
export type SelectorExtras = string | { untagged?: boolean };

export interface Selector {
  kind: SelectorKind;
  decoration: SelectorDecoration;
  pattern: string;
  extras?: SelectorExtras;
}

export const MAX_PATTERN_LENGTH = 256;

export type SelectorErrorCode = 'invalid_pattern' | 'pattern_too_long' | 'invalid_kind' | 'invalid_decoration' | 'invalid_extras';

/** A selector that cannot be compiled. Routes answer it with 400. */
export class SelectorError extends Error {
  readonly code: SelectorErrorCode;
  readonly pattern: string;

  constructor(code: SelectorErrorCode, pattern: string, reason: string) {
    super(`invalid selector pattern ${JSON.stringify(pattern)}: ${reason}`);
    this.name = 'SelectorError';
    this.code = code;
    this.pattern = pattern;
  }
}

const REGEX_META = /[\\^$.*+?()[\]{}|/]/g;
const CLASS_META = /[\\^\][-]/g;

function escapeRegex(text: string): string {
  return text.replace(REGEX_META, '\\$&');
}

function escapeClass(text: string): string {
  return text.replace(CLASS_META, '\\$&');
}

/**
 * Compiles a doublestar pattern to an anchored RegExp.
 * - `*` any run of characters except `/`; `?` one character except `/`;
 * - a double star that is a whole path segment crosses segments: followed by a slash it stands
 *   for zero or more leading segments, between two slashes for zero or more middle segments, as
 *   the last segment (`a/**`) for zero or more trailing segments (so it also matches `a`), alone
 *   for everything. Elsewhere (`a**b`) it acts like a single star, as in doublestar;
 * - `[abc]`, `[a-z]`, `[!a]` / `[^a]` classes (never matching `/`); `{a,b}` alternatives (nestable);
 * - `\x` makes x literal; every other character is literal (regex metacharacters are escaped).
 */
export function compileDoublestar(pattern: string): RegExp {
  checkLength(pattern);
  const parser = new DoublestarParser(pattern);
  const body = parser.parseSequence(0);
  if (parser.pos < pattern.length) throw new SelectorError('invalid_pattern', pattern, `unexpected ${JSON.stringify(pattern[parser.pos])} at ${parser.pos}`);
  return new RegExp(`^${body}$`, 's');
}

class DoublestarParser {
  readonly pattern: string;
  pos = 0;

  constructor(pattern: string) {
    this.pattern = pattern;
  }

  private fail(reason: string): never {
    throw new SelectorError('invalid_pattern', this.pattern, reason);
  }

  /** Whether position i is a segment boundary on its left (start, `/`, `{` or `,`). */
  private leftBoundary(i: number): boolean {
    if (i === 0) return true;
    const c = this.pattern[i - 1];
    return c === '/' || c === '{' || (c === ',' && this.braceDepth > 0);
  }

  private braceDepth = 0;

  /** Parses until the end, or (inside braces) until an unconsumed `,` or `}`. */
  parseSequence(depth: number): string {
    const p = this.pattern;
    let out = '';
    while (this.pos < p.length) {
      const c = p[this.pos]!;
      if (depth > 0 && (c === ',' || c === '}')) break;
      if (c === '\\') {
        if (this.pos + 1 >= p.length) this.fail('trailing backslash');
        out += escapeRegex(p[this.pos + 1]!);
        this.pos += 2;
      } else if (c === '*') {
        let end = this.pos;
        while (p[end] === '*') end++;
        const next = p[end];
        const rightBoundary = next === undefined || next === '/' || (depth > 0 && (next === ',' || next === '}'));
        if (end - this.pos === 2 && this.leftBoundary(this.pos) && rightBoundary) {
          if (next === '/') {
            out += '(?:.*/)?'; // `**/`: zero or more leading segments
            this.pos = end + 1;
          } else {
            out += '.*'; // `**` as the last segment (see the `/**` case below)
            this.pos = end;
          }
        } else {
          out += '[^/]*';
          this.pos = end;
        }
      } else if (c === '/' && p.startsWith('**', this.pos + 1) && (this.pos + 3 === p.length || (depth > 0 && (p[this.pos + 3] === ',' || p[this.pos + 3] === '}')))) {
        out += '(?:/.*)?'; // trailing `/**`: zero or more trailing segments
        this.pos += 3;
      } else if (c === '?') {
        out += '[^/]';
        this.pos++;
      } else if (c === '[') {
        out += this.parseClass();
      } else if (c === '{') {
        this.pos++;
        this.braceDepth++;
        const alternatives: string[] = [];
        for (;;) {
          alternatives.push(this.parseSequence(depth + 1));
          const d = p[this.pos];
          if (d === ',') {
            this.pos++;
            continue;
          }
          if (d === '}') {
            this.pos++;
            break;
          }
          this.fail('unterminated {');
        }
        this.braceDepth--;
        out += `(?:${alternatives.join('|')})`;
      } else {
        out += escapeRegex(c);
        this.pos++;
      }
    }
    return out;
  }

  private parseClass(): string {
    const p = this.pattern;
    const start = this.pos;
    this.pos++; // `[`
    let negated = false;
    if (p[this.pos] === '!' || p[this.pos] === '^') {
      negated = true;
      this.pos++;
    }
    let items = '';
    let count = 0;
    const readChar = (): string => {
      let ch = p[this.pos];
      if (ch === undefined) this.fail(`unterminated [ at ${start}`);
      if (ch === '\\') {
        this.pos++;
        ch = p[this.pos];
        if (ch === undefined) this.fail('trailing backslash');
      }
      this.pos++;
      return ch;
    };
    while (p[this.pos] !== ']') {
      if (this.pos >= p.length) this.fail(`unterminated [ at ${start}`);
      const lo = readChar();
      if (p[this.pos] === '-' && p[this.pos + 1] !== ']' && this.pos + 1 < p.length) {
        this.pos++;
        const hi = readChar();
        if (hi < lo) this.fail(`bad range ${lo}-${hi}`);
        // A class never matches the separator: a range across `/` is split around it (no
        // lookahead, so that the linear-time engine can run the pattern; see the top).
        if (negated || lo > '/' || hi < '/') items += `${escapeClass(lo)}-${escapeClass(hi)}`;
        else {
          if (lo < '/') items += `${escapeClass(lo)}-.`;
          if (hi > '/') items += `0-${escapeClass(hi)}`;
        }
      } else if (negated || lo !== '/') {
        items += escapeClass(lo);
      }
      count++;
    }
    this.pos++; // `]`
    if (count === 0) this.fail(`empty character class at ${start}`);
    if (negated) return `[^/${items}]`;
    // Only `/` was listed: a class that matches nothing.
    return items === '' ? '[^\\s\\S]' : `[${items}]`;
  }
}

function checkLength(pattern: string): void {
  if (pattern.length > MAX_PATTERN_LENGTH) throw new SelectorError('pattern_too_long', pattern.slice(0, 40) + '…', `longer than ${MAX_PATTERN_LENGTH} characters (${pattern.length})`);
}

/**
 * A construct of a regex pattern that the linear-time engine cannot run (so a match could take
 * exponential time) or whose meaning differs outside unicode mode; undefined when there is none.
 */
function unsupportedConstruct(pattern: string): string | undefined {
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k') return 'a backreference';
      if (next === 'p' || next === 'P') return 'a unicode property escape';
      if (next === 'u' && pattern[i + 2] === '{') return 'a \\u{…} code point escape';
      i++;
    } else if (c === '(' && pattern[i + 1] === '?') {
      const kind = pattern.slice(i + 2, i + 4);
      if (kind.startsWith('=') || kind.startsWith('!') || kind === '<=' || kind === '<!') return 'a lookahead or lookbehind';
    }
  }
  return undefined;
}

/**
 * Compiles a regex pattern as an anchored full match (`^(?:pattern)$`). The syntax is checked in
 * unicode mode (strict); the pattern runs without it, so that an excessive match falls back to
 * V8's linear-time engine (see the top of this file). Backreferences and lookarounds are refused.
 */
export function compileRegex(pattern: string): RegExp {
  checkLength(pattern);
  try {
    new RegExp(pattern, 'u');
  } catch (err) {
    throw new SelectorError('invalid_pattern', pattern, `not a valid regular expression (${(err as Error).message})`);
  }
  const unsupported = unsupportedConstruct(pattern);
  if (unsupported !== undefined) throw new SelectorError('invalid_pattern', pattern, `${unsupported} is not supported: matching must take linear time`);
  return new RegExp(`^(?:${pattern})$`);
}

/** A compiled pattern: does this one string match? An empty pattern matches everything (Harbor). */
export function compilePattern(kind: SelectorKind, pattern: string): (value: string) => boolean {
  if (typeof pattern !== 'string') throw new SelectorError('invalid_pattern', String(pattern), 'the pattern must be a string');
  let re: RegExp;
  if (kind === 'doublestar') re = compileDoublestar(pattern);
  else if (kind === 'regex') re = compileRegex(pattern);
  else throw new SelectorError('invalid_kind', pattern, `unknown selector kind ${JSON.stringify(kind)} (doublestar or regex)`);
  if (pattern === '') return () => true;
  return (value) => re.test(value);
}

/** Whether a doublestar pattern matches the value (compiles each call; compile once for loops). */
export function matchDoublestar(pattern: string, value: string): boolean {
  return compilePattern('doublestar', pattern)(value);
}

function parseUntagged(selector: Selector): boolean {
  const fallback = selector.decoration !== 'excludes';
  const extras = selector.extras;
  if (extras === undefined || extras === '') return fallback;
  let value: unknown = extras;
  if (typeof extras === 'string') {
    try {
      value = JSON.parse(extras);
    } catch {
      throw new SelectorError('invalid_extras', selector.pattern, `extras is not JSON: ${JSON.stringify(extras)}`);
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new SelectorError('invalid_extras', selector.pattern, 'extras must be an object');
  const untagged = (value as { untagged?: unknown }).untagged;
  if (untagged === undefined) return fallback;
  if (typeof untagged !== 'boolean') throw new SelectorError('invalid_extras', selector.pattern, 'extras.untagged must be a boolean');
  return untagged;
}

export interface CompiledTagSelector {
  readonly selector: Selector;
  /** Whether one tag satisfies the selector (matches the pattern, or does not for `excludes`). */
  acceptsTag(tag: string): boolean;
  /** Whether an artifact with these tags is selected (Harbor's any-tag rule, untagged extra). */
  selects(tags: readonly string[]): boolean;
}

export function compileTagSelector(selector: Selector): CompiledTagSelector {
  if (selector.decoration !== 'matches' && selector.decoration !== 'excludes') {
    throw new SelectorError('invalid_decoration', selector.pattern, `a tag selector's decoration is matches or excludes, not ${JSON.stringify(selector.decoration)}`);
  }
  const match = compilePattern(selector.kind, selector.pattern);
  const excludes = selector.decoration === 'excludes';
  const untagged = parseUntagged(selector);
  const acceptsTag = (tag: string): boolean => match(tag) !== excludes;
  return {
    selector,
    acceptsTag,
    selects(tags) {
      if (tags.length === 0) return excludes ? !untagged : untagged;
      return tags.some(acceptsTag);
    },
  };
}

export interface CompiledRepositorySelector {
  readonly selector: Selector;
  /** Whether the repository path within its project is selected. */
  selects(pathInProject: string): boolean;
}

export function compileRepositorySelector(selector: Selector): CompiledRepositorySelector {
  const d = selector.decoration;
  if (d !== 'repoMatches' && d !== 'repoExcludes' && d !== 'matches' && d !== 'excludes') {
    throw new SelectorError('invalid_decoration', selector.pattern, `a repository selector's decoration is repoMatches or repoExcludes, not ${JSON.stringify(d)}`);
  }
  const match = compilePattern(selector.kind, selector.pattern);
  const excludes = d === 'repoExcludes' || d === 'excludes';
  return { selector, selects: (pathInProject) => match(pathInProject) !== excludes };
}

/**
 * The repository path within its project, as Harbor's `utils.ParseRepository` computes it: the
 * part after the first `/` (`library/team/app` → `team/app`); a name without `/` is returned whole.
 */
export function repositoryPathInProject(repository: string): string {
  const slash = repository.indexOf('/');
  return slash < 0 ? repository : repository.slice(slash + 1);
}

/** Several selectors combine by AND (Harbor applies them one after the other). */
export function allSelect<T>(compiled: readonly { selects(value: T): boolean }[], value: T): boolean {
  return compiled.every((c) => c.selects(value));
}
