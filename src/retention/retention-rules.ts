/**
 * The pure core of tag retention: evaluates a policy (a list of rules) over candidate artifacts and
 * says which are retained (and by which rules) and which are removed (and why). No I/O, no clock:
 * `now` is passed in. Not wired to any route or job here.
 *
 * Harbor behaviours followed (goharbor/harbor):
 * - algorithm "or" (src/pkg/retention/policy/alg/or/processor.go): every enabled rule retains a
 *   set; an artifact is retained when ANY rule retains it; every other artifact in scope is removed.
 * - scope is per repository (src/pkg/retention/launcher.go): a repository is in scope when at least
 *   one enabled rule's repository selectors select it; all of its artifacts are then candidates,
 *   including ones no rule's tag selectors select (those are removed). Repository selectors see the
 *   path without the project prefix (see selectors.ts). Disabled rules are skipped.
 * - counting templates work per repository (one retention task per repository in Harbor).
 * - latestPushedK / latestPulledN sort by push / pull time, newest first, and keep the first K/N
 *   (src/pkg/retention/policy/rule/latestps, latestpl). Never-pulled artifacts have pull time 0
 *   there, so they sort as the oldest but still fill remaining slots. Ties are broken here
 *   deterministically (newer push first, then digest ascending); Harbor's sort is unstable.
 * - nDaysSinceLastPush / nDaysSinceLastPull keep artifacts whose time is >= now - N×24h
 *   (inclusive, src/pkg/retention/policy/rule/daysps, dayspl); never pulled = not retained by
 *   nDaysSinceLastPull.
 * - bounds: K/N < 32767 (math.MaxInt16) and days <= 20190904 as Harbor's Valid(); Harbor also
 *   accepts 0 and falls back to defaults when a parameter is missing — Berth refuses both (a
 *   retention rule of 0 would silently delete everything it selects). At most 15 rules per policy.
 * - an artifact carrying an immutable tag is never removed (Harbor's retention skips immutable
 *   artifacts); it is reported as retained with `protectedByImmutability`.
 */

import { allSelect, type CompiledRepositorySelector, type CompiledTagSelector, compileRepositorySelector, compileTagSelector, repositoryPathInProject, type Selector } from './selectors.ts';

export const RETENTION_TEMPLATES = ['latestPushedK', 'latestPulledN', 'nDaysSinceLastPush', 'nDaysSinceLastPull', 'always'] as const;
export type RetentionTemplate = (typeof RETENTION_TEMPLATES)[number];

export const MAX_RULES = 15;
/** Harbor: `v >= math.MaxInt16` is too large for latestPushedK / latestPulledN. */
export const MAX_COUNT = 32766;
/** Harbor: `v > 20190904` is too large for the day templates. */
export const MAX_DAYS = 20190904;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface RetentionRule {
  /** Optional identity for reports; the rule's index is always reported. */
  id?: string | number;
  priority?: number;
  disabled?: boolean;
  /** Harbor's only action. */
  action?: 'retain';
  template: string;
  /** Harbor keys the parameter by the template id: `{latestPushedK: 5}`. */
  params?: Record<string, unknown>;
  tag_selectors?: Selector[];
  scope_selectors?: { repository?: Selector[] };
}

export interface RetentionPolicy {
  algorithm?: 'or';
  rules: RetentionRule[];
}

export interface RetentionCandidate {
  /** Full repository name, project first: `library/team/app`. */
  repository: string;
  digest: string;
  tags: readonly string[];
  pushedAt: Date | number;
  pulledAt: Date | number | null;
}

export interface RuleRef {
  index: number;
  id?: string | number;
  template: RetentionTemplate;
}

export interface RetainedArtifact {
  artifact: RetentionCandidate;
  /** The rules that retained it (empty when only immutability protects it). */
  retainedBy: RuleRef[];
  protectedByImmutability: boolean;
  immutableTags: string[];
}

export interface RemovedArtifact {
  artifact: RetentionCandidate;
  reason: 'not_retained';
  detail: string;
}

export interface RetentionResult {
  retained: RetainedArtifact[];
  removed: RemovedArtifact[];
  /** Artifacts in repositories no enabled rule selects: left alone. */
  outOfScope: RetentionCandidate[];
}

export interface EvaluateOptions {
  now: Date | number;
  /** Whether a tag of a repository (full name) is immutable; defaults to never. */
  isImmutable?: (repository: string, tag: string) => boolean;
}

export type RetentionRuleErrorCode = 'unknown_template' | 'invalid_param' | 'too_many_rules' | 'invalid_rule' | 'invalid_algorithm';

export class RetentionRuleError extends Error {
  readonly code: RetentionRuleErrorCode;
  readonly ruleIndex: number | undefined;

  constructor(code: RetentionRuleErrorCode, message: string, ruleIndex?: number) {
    super(ruleIndex === undefined ? message : `rule ${ruleIndex}: ${message}`);
    this.name = 'RetentionRuleError';
    this.code = code;
    this.ruleIndex = ruleIndex;
  }
}

interface CompiledRule {
  ref: RuleRef;
  disabled: boolean;
  /** K, N or days; 0 for `always`. */
  n: number;
  tagSelectors: CompiledTagSelector[];
  repositorySelectors: CompiledRepositorySelector[];
}

function isTemplate(value: string): value is RetentionTemplate {
  return (RETENTION_TEMPLATES as readonly string[]).includes(value);
}

function parameter(rule: RetentionRule, index: number, key: RetentionTemplate, max: number): number {
  const value = rule.params?.[key];
  if (value === undefined) throw new RetentionRuleError('invalid_param', `template ${key} needs the parameter ${key}`, index);
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new RetentionRuleError('invalid_param', `${key} must be an integer, got ${JSON.stringify(value)}`, index);
  if (value < 1) throw new RetentionRuleError('invalid_param', `${key} must be at least 1, got ${value}`, index);
  if (value > max) throw new RetentionRuleError('invalid_param', `${key} must be at most ${max}, got ${value}`, index);
  return value;
}

/** Validates a policy and compiles its selectors; throws RetentionRuleError or SelectorError. */
export function compilePolicy(policy: RetentionPolicy): CompiledRule[] {
  if (policy.algorithm !== undefined && policy.algorithm !== 'or') throw new RetentionRuleError('invalid_algorithm', `unknown algorithm ${JSON.stringify(policy.algorithm)} (only "or")`);
  if (!Array.isArray(policy.rules)) throw new RetentionRuleError('invalid_rule', 'rules must be a list');
  if (policy.rules.length > MAX_RULES) throw new RetentionRuleError('too_many_rules', `at most ${MAX_RULES} rules, got ${policy.rules.length}`);
  return policy.rules.map((rule, index) => {
    if (rule.action !== undefined && rule.action !== 'retain') throw new RetentionRuleError('invalid_rule', `unknown action ${JSON.stringify(rule.action)} (only "retain")`, index);
    const template = rule.template;
    if (typeof template !== 'string' || !isTemplate(template)) throw new RetentionRuleError('unknown_template', `unknown template ${JSON.stringify(template)} (one of ${RETENTION_TEMPLATES.join(', ')})`, index);
    let n = 0;
    if (template === 'latestPushedK' || template === 'latestPulledN') n = parameter(rule, index, template, MAX_COUNT);
    else if (template === 'nDaysSinceLastPush' || template === 'nDaysSinceLastPull') n = parameter(rule, index, template, MAX_DAYS);
    const ref: RuleRef = { index, template };
    if (rule.id !== undefined) ref.id = rule.id;
    return {
      ref,
      disabled: rule.disabled === true,
      n,
      tagSelectors: (rule.tag_selectors ?? []).map(compileTagSelector),
      repositorySelectors: (rule.scope_selectors?.repository ?? []).map(compileRepositorySelector),
    };
  });
}

function ms(value: Date | number): number {
  return typeof value === 'number' ? value : value.getTime();
}

/** Pull time for sorting: never pulled is the oldest. */
function pulledMs(c: RetentionCandidate): number {
  return c.pulledAt === null ? Number.NEGATIVE_INFINITY : ms(c.pulledAt);
}

function byDigest(a: RetentionCandidate, b: RetentionCandidate): number {
  return a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0;
}

function byPushedDesc(a: RetentionCandidate, b: RetentionCandidate): number {
  return ms(b.pushedAt) - ms(a.pushedAt) || byDigest(a, b);
}

function byPulledDesc(a: RetentionCandidate, b: RetentionCandidate): number {
  const pa = pulledMs(a);
  const pb = pulledMs(b);
  if (pa !== pb) return pa < pb ? 1 : -1;
  return byPushedDesc(a, b);
}

/** Which of one repository's selected artifacts a rule retains. */
function applyTemplate(rule: CompiledRule, selected: RetentionCandidate[], now: number): RetentionCandidate[] {
  switch (rule.ref.template) {
    case 'always':
      return selected;
    case 'latestPushedK':
      return [...selected].sort(byPushedDesc).slice(0, rule.n);
    case 'latestPulledN':
      return [...selected].sort(byPulledDesc).slice(0, rule.n);
    case 'nDaysSinceLastPush': {
      const since = now - rule.n * DAY_MS;
      return selected.filter((c) => ms(c.pushedAt) >= since);
    }
    case 'nDaysSinceLastPull': {
      const since = now - rule.n * DAY_MS;
      return selected.filter((c) => c.pulledAt !== null && ms(c.pulledAt) >= since);
    }
  }
}

/** Evaluates a retention policy over candidate artifacts (Harbor's "or" algorithm). */
export function evaluateRetention(policy: RetentionPolicy, candidates: readonly RetentionCandidate[], options: EvaluateOptions): RetentionResult {
  const rules = compilePolicy(policy).filter((r) => !r.disabled);
  const now = ms(options.now);
  const isImmutable = options.isImmutable ?? (() => false);

  const byRepository = new Map<string, RetentionCandidate[]>();
  for (const c of candidates) {
    const list = byRepository.get(c.repository);
    if (list) list.push(c);
    else byRepository.set(c.repository, [c]);
  }

  const retainedBy = new Map<RetentionCandidate, RuleRef[]>();
  const inScope = new Set<string>();
  for (const [repository, artifacts] of byRepository) {
    const path = repositoryPathInProject(repository);
    for (const rule of rules) {
      if (!allSelect(rule.repositorySelectors, path)) continue;
      inScope.add(repository);
      const selected = artifacts.filter((a) => allSelect(rule.tagSelectors, a.tags));
      for (const kept of applyTemplate(rule, selected, now)) {
        const refs = retainedBy.get(kept);
        if (refs) refs.push(rule.ref);
        else retainedBy.set(kept, [rule.ref]);
      }
    }
  }

  const result: RetentionResult = { retained: [], removed: [], outOfScope: [] };
  for (const artifact of candidates) {
    if (!inScope.has(artifact.repository)) {
      result.outOfScope.push(artifact);
      continue;
    }
    const refs = retainedBy.get(artifact) ?? [];
    const immutableTags = artifact.tags.filter((t) => isImmutable(artifact.repository, t));
    if (refs.length > 0 || immutableTags.length > 0) {
      result.retained.push({ artifact, retainedBy: refs, protectedByImmutability: refs.length === 0 && immutableTags.length > 0, immutableTags });
    } else {
      result.removed.push({ artifact, reason: 'not_retained', detail: 'no enabled rule retained this artifact' });
    }
  }
  return result;
}
