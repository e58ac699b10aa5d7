/**
 * Harbor's RetentionPolicy as the API sends and shows it, checked and normalised before it is
 * stored (pure: no I/O). What the rules mean is retention-rules.ts; this file is the envelope:
 * algorithm, trigger (one cron schedule for the whole policy), scope (one project) and the checks
 * Harbor's API makes on top of the evaluator's (duplicate rules are a conflict).
 *
 * Every problem is a RetentionPolicyError naming what is wrong; routes answer it with 400 (409
 * for duplicate rules). Nothing is stored unless the whole policy passes.
 */
import { InvalidCronError, validateCron } from '../platform/jobs/scheduler.ts';
import { compilePolicy, RETENTION_TEMPLATES, type RetentionRule, RetentionRuleError } from './retention-rules.ts';
import { type Selector, SelectorError } from './selectors.ts';

/** A selector as Harbor sends it; `extras` is JSON text (`{"untagged":true}`) or, from Berth clients, an object. */
export interface SelectorInput {
  readonly kind: string;
  readonly decoration: string;
  readonly pattern: string;
  readonly extras?: string | { readonly untagged?: boolean } | undefined;
}

export interface RuleInput {
  readonly id?: number | undefined;
  readonly priority?: number | undefined;
  readonly disabled?: boolean | undefined;
  readonly action?: string | undefined;
  readonly template: string;
  readonly params?: Readonly<Record<string, unknown>> | undefined;
  readonly tag_selectors?: readonly SelectorInput[] | undefined;
  readonly scope_selectors?: Readonly<Record<string, readonly SelectorInput[]>> | undefined;
}

export interface PolicyInput {
  readonly id?: number | undefined;
  readonly algorithm?: string | undefined;
  readonly rules: readonly RuleInput[];
  readonly trigger?: { readonly kind?: string | undefined; readonly settings?: { readonly cron?: string | undefined } | undefined; readonly references?: unknown } | undefined;
  readonly scope: { readonly level: string; readonly ref: number };
}

/** A stored rule: every field present, selectors normalised (extras as JSON text). */
export interface StoredRule {
  id: number;
  priority: number;
  disabled: boolean;
  action: 'retain';
  template: string;
  params: Record<string, unknown>;
  tag_selectors: Selector[];
  scope_selectors: { repository: Selector[] };
}

/** What is stored (and shown, with the id). `trigger.settings.cron` is '' when the policy only runs on demand. */
export interface StoredPolicy {
  algorithm: 'or';
  rules: StoredRule[];
  trigger: { kind: 'Schedule'; settings: { cron: string } };
  scope: { level: 'project'; ref: number };
}

export type RetentionPolicyErrorCode = 'invalid' | 'conflict';

export class RetentionPolicyError extends Error {
  readonly code: RetentionPolicyErrorCode;
  constructor(message: string, code: RetentionPolicyErrorCode = 'invalid') {
    super(message);
    this.name = 'RetentionPolicyError';
    this.code = code;
  }
}

/** The parameter key each template takes (Harbor keys it by the template id); `always` takes none. */
function parameterKeys(template: string): string[] {
  return template === 'always' ? [] : [template];
}

function normalizeSelector(input: SelectorInput, where: string): Selector {
  let extras: string | undefined;
  if (typeof input.extras === 'string') extras = input.extras;
  else if (input.extras !== undefined) extras = JSON.stringify(input.extras);
  const selector: Selector = { kind: input.kind as Selector['kind'], decoration: input.decoration as Selector['decoration'], pattern: input.pattern };
  if (extras !== undefined && extras !== '') selector.extras = extras;
  if (typeof selector.pattern !== 'string') throw new RetentionPolicyError(`${where}: pattern must be a string`);
  return selector;
}

function normalizeRule(rule: RuleInput, index: number): StoredRule {
  const where = `rule ${index}`;
  const params: Record<string, unknown> = { ...(rule.params ?? {}) };
  const allowed = parameterKeys(rule.template);
  for (const key of Object.keys(params)) {
    if (!allowed.includes(key)) {
      const known = (RETENTION_TEMPLATES as readonly string[]).includes(rule.template);
      throw new RetentionPolicyError(
        known
          ? `${where}: template ${rule.template} takes ${allowed.length === 0 ? 'no parameters' : `only the parameter ${allowed[0]}`}, not ${JSON.stringify(key)}`
          : `${where}: unknown template ${JSON.stringify(rule.template)} (one of ${RETENTION_TEMPLATES.join(', ')})`,
      );
    }
  }
  const scopeKeys = Object.keys(rule.scope_selectors ?? {});
  for (const key of scopeKeys) {
    if (key !== 'repository') throw new RetentionPolicyError(`${where}: scope_selectors has only "repository", not ${JSON.stringify(key)}`);
  }
  return {
    id: index + 1,
    priority: rule.priority ?? 0,
    disabled: rule.disabled === true,
    action: 'retain',
    template: rule.template,
    params,
    tag_selectors: (rule.tag_selectors ?? []).map((s, i) => normalizeSelector(s, `${where} tag selector ${i}`)),
    scope_selectors: { repository: (rule.scope_selectors?.repository ?? []).map((s, i) => normalizeSelector(s, `${where} repository selector ${i}`)) },
  };
}

/**
 * Checks a policy the API received and returns what to store. `now` is for the cron check (an
 * expression must fire after now). Throws RetentionPolicyError.
 */
export function normalizePolicy(input: PolicyInput, now: number = Date.now()): StoredPolicy {
  const algorithm = input.algorithm ?? 'or';
  if (algorithm !== 'or') throw new RetentionPolicyError(`unknown algorithm ${JSON.stringify(algorithm)}: only "or" (an artifact is kept when any rule retains it)`);
  if (input.scope.level !== 'project') throw new RetentionPolicyError(`scope.level must be "project", not ${JSON.stringify(input.scope.level)}`);
  if (!Number.isSafeInteger(input.scope.ref) || input.scope.ref <= 0) throw new RetentionPolicyError(`scope.ref must be a project id, not ${JSON.stringify(input.scope.ref)}`);
  for (const [index, rule] of input.rules.entries()) {
    if (rule.action !== undefined && rule.action !== 'retain') throw new RetentionPolicyError(`rule ${index}: unknown action ${JSON.stringify(rule.action)} (only "retain")`);
  }
  const rules = input.rules.map(normalizeRule);
  try {
    compilePolicy({ algorithm: 'or', rules: rules as RetentionRule[] });
  } catch (err) {
    if (err instanceof RetentionRuleError || err instanceof SelectorError) throw new RetentionPolicyError(err.message);
    throw err;
  }
  // Harbor: two rules that are the same apart from their id conflict.
  const seen = new Map<string, number>();
  for (const [index, rule] of rules.entries()) {
    const key = JSON.stringify({ ...rule, id: 0 });
    const first = seen.get(key);
    if (first !== undefined) throw new RetentionPolicyError(`rule ${index} is the same as rule ${first}`, 'conflict');
    seen.set(key, index);
  }
  const kind = input.trigger?.kind ?? 'Schedule';
  if (kind !== 'Schedule') throw new RetentionPolicyError(`trigger.kind must be "Schedule", not ${JSON.stringify(kind)}`);
  const cron = (input.trigger?.settings?.cron ?? '').trim();
  if (cron !== '') {
    try {
      validateCron(cron, now);
    } catch (err) {
      if (err instanceof InvalidCronError) throw new RetentionPolicyError(`trigger.settings.cron: ${err.message}`);
      throw err;
    }
  }
  return { algorithm: 'or', rules, trigger: { kind: 'Schedule', settings: { cron } }, scope: { level: 'project', ref: input.scope.ref } };
}

/** Harbor's GET /retentions/metadatas: the templates and selectors a client may use (plus Berth's regex kind). */
export const RETENTION_METADATA = {
  templates: [
    { rule_template: 'latestPushedK', display_text: 'the most recently pushed # artifacts', action: 'retain', params: [{ type: 'int', unit: 'COUNT', required: true }] },
    { rule_template: 'latestPulledN', display_text: 'the most recently pulled # artifacts', action: 'retain', params: [{ type: 'int', unit: 'COUNT', required: true }] },
    { rule_template: 'nDaysSinceLastPush', display_text: 'pushed within the last # days', action: 'retain', params: [{ type: 'int', unit: 'DAYS', required: true }] },
    { rule_template: 'nDaysSinceLastPull', display_text: 'pulled within the last # days', action: 'retain', params: [{ type: 'int', unit: 'DAYS', required: true }] },
    { rule_template: 'always', display_text: 'always', action: 'retain', params: [] },
  ],
  scope_selectors: [
    { display_text: 'Repositories', kind: 'doublestar', decorations: ['repoMatches', 'repoExcludes'] },
    { display_text: 'Repositories (regular expression)', kind: 'regex', decorations: ['repoMatches', 'repoExcludes'] },
  ],
  tag_selectors: [
    { display_text: 'Tags', kind: 'doublestar', decorations: ['matches', 'excludes'] },
    { display_text: 'Tags (regular expression)', kind: 'regex', decorations: ['matches', 'excludes'] },
  ],
};
