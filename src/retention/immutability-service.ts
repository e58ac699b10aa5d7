/**
 * Tag immutability: a project's rules (Harbor's ImmutableRule, at most MAX_IMMUTABLE_RULES) and
 * the registry gate that enforces them (ManifestGates, src/registry/manifests.ts).
 *
 * The gate refuses, with a ManifestGateError naming the tag and the rule:
 * - a manifest PUT (or an API tag) that would move an existing immutable tag to another digest
 *   (pushing the same digest again is allowed, and so is creating the tag);
 * - deleting an immutable tag;
 * - deleting a manifest while an immutable tag points at it.
 * Other tags of the same artifact stay deletable, as in Harbor.
 *
 * Cost on the push path: rules are compiled once per project and cached by project name (the
 * repository's first path component), with or without rules; the cache entry of a project is
 * dropped when its rules change here, and every entry expires after `cacheTtlMs`, which bounds
 * how long a rule changed on another node takes to apply on this one. A push whose tag no rule
 * matches costs a map lookup and a few regular-expression tests; only a push to an immutable tag
 * reads where the tag points now.
 */
import { badRequest, conflict, notFound } from '../platform/http/api.ts';
import { type ManifestGates, ManifestGateError } from '../registry/manifests.ts';
import { compileImmutableRules, type CompiledImmutableRules, type ImmutableRule, MAX_IMMUTABLE_RULES } from './immutability.ts';
import type { ImmutabilityStore, ImmutableRuleFields, ImmutableRuleSortKey, StoredImmutableRule } from './immutability-store.ts';
import { allSelect, compileRepositorySelector, compileTagSelector, repositoryPathInProject, type Selector, SelectorError } from './selectors.ts';

/** Harbor's fixed action and template of an immutability rule. */
export const IMMUTABLE_ACTION = 'immutable';
export const IMMUTABLE_TEMPLATE = 'immutable_template';
/** How long compiled rules are trusted before being read again (rules changed on another node). */
export const DEFAULT_RULE_CACHE_TTL_MS = 5_000;
const CACHE_MAX_PROJECTS = 10_000;
/** Selectors per kind in one rule (Harbor's UI sends one; several AND). */
export const MAX_SELECTORS = 10;

/** What the service asks of the projects capability. */
export interface ImmutabilityProjects {
  findByName(name: string): Promise<{ readonly id: number } | undefined>;
}

/** What the service asks of the registry: the tags pointing at a manifest (for deletes by digest). */
export type TagsOfManifest = (repository: string, digest: string) => Promise<string[]>;

export interface ImmutabilityServiceDeps {
  readonly store: ImmutabilityStore;
  readonly projects: ImmutabilityProjects;
  readonly tagsOfManifest: TagsOfManifest;
  readonly now?: () => number;
  readonly cacheTtlMs?: number;
}

/** A rule as the API takes it (Harbor's ImmutableRule; id and project_id come from the path). */
export interface ImmutableRuleInput {
  readonly priority?: number | undefined;
  readonly disabled?: boolean | undefined;
  readonly action?: string | undefined;
  readonly template?: string | undefined;
  readonly tag_selectors: readonly Selector[];
  readonly scope_selectors: { readonly repository: readonly Selector[] };
}

/** Harbor's ImmutableRule as the API shows it. */
export interface ImmutableRuleJson {
  id: number;
  project_id: number;
  priority: number;
  disabled: boolean;
  action: string;
  template: string;
  params: Record<string, unknown>;
  tag_selectors: Selector[];
  scope_selectors: { repository: Selector[] };
}

export function ruleJson(rule: StoredImmutableRule): ImmutableRuleJson {
  return {
    id: rule.id,
    project_id: rule.projectId,
    priority: rule.priority,
    disabled: rule.disabled,
    action: IMMUTABLE_ACTION,
    template: IMMUTABLE_TEMPLATE,
    params: {},
    tag_selectors: rule.tagSelectors,
    scope_selectors: { repository: rule.repositorySelectors },
  };
}

/** The pure model's shape (src/retention/immutability.ts), for retention and matching. */
function modelRule(rule: StoredImmutableRule): ImmutableRule {
  return { id: rule.id, priority: rule.priority, disabled: rule.disabled, tag_selectors: rule.tagSelectors, scope_selectors: { repository: rule.repositorySelectors } };
}

interface CompiledRule {
  readonly id: number;
  readonly matches: CompiledImmutableRules;
  /** Whether the rule can apply to a repository at all (its repository selectors). */
  readonly coversPath: (pathInProject: string) => boolean;
}

interface ProjectRules {
  readonly projectId: number;
  readonly projectName: string;
  /** Enabled rules only. */
  readonly rules: readonly CompiledRule[];
}

function compileRule(rule: StoredImmutableRule): CompiledRule | undefined {
  if (rule.disabled) return undefined;
  try {
    const repositorySelectors = rule.repositorySelectors.map(compileRepositorySelector);
    return { id: rule.id, matches: compileImmutableRules([modelRule(rule)]), coversPath: (path) => repositorySelectors.length > 0 && allSelect(repositorySelectors, path) };
  } catch {
    // Rules are validated when written; one that no longer compiles matches nothing.
    return undefined;
  }
}

function canonical(selectors: readonly Selector[]): string {
  return JSON.stringify(selectors.map((s) => [s.kind, s.decoration, s.pattern, typeof s.extras === 'string' ? s.extras : s.extras === undefined ? '' : JSON.stringify(s.extras)]));
}

export class ImmutabilityService {
  readonly #store: ImmutabilityStore;
  readonly #projects: ImmutabilityProjects;
  readonly #tagsOfManifest: TagsOfManifest;
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, { readonly expires: number; readonly value: Promise<ProjectRules | undefined> }>();

  constructor(deps: ImmutabilityServiceDeps) {
    this.#store = deps.store;
    this.#projects = deps.projects;
    this.#tagsOfManifest = deps.tagsOfManifest;
    this.#now = deps.now ?? Date.now;
    this.#ttlMs = deps.cacheTtlMs ?? DEFAULT_RULE_CACHE_TTL_MS;
  }

  // ── rules (the API) ──────────────────────────────────────────────────────

  async list(projectId: number, sort: readonly { key: ImmutableRuleSortKey; desc: boolean }[], offset: number, limit: number): Promise<{ total: number; items: ImmutableRuleJson[] }> {
    const [total, rules] = await Promise.all([this.#store.count(projectId), this.#store.list(projectId, sort, offset, limit)]);
    return { total, items: rules.map(ruleJson) };
  }

  async create(project: { id: number; name: string }, input: ImmutableRuleInput): Promise<ImmutableRuleJson> {
    const fields = validateRule(input);
    const rule = await this.#store.create(project.id, fields, this.#now(), (others) => {
      if (others.length >= MAX_IMMUTABLE_RULES) throw badRequest(`project ${project.name} already has ${others.length} immutability rules, the most a project may have (${MAX_IMMUTABLE_RULES})`);
      refuseDuplicate(others, fields);
    });
    this.#forget(project.name);
    return ruleJson(rule);
  }

  async update(project: { id: number; name: string }, id: number, input: ImmutableRuleInput): Promise<ImmutableRuleJson> {
    const fields = validateRule(input);
    const rule = await this.#store.update(project.id, id, fields, this.#now(), (others) => refuseDuplicate(others, fields));
    if (!rule) throw notFound(`immutability rule ${id} not found in project ${project.name}`);
    this.#forget(project.name);
    return ruleJson(rule);
  }

  async delete(project: { id: number; name: string }, id: number): Promise<void> {
    if (!(await this.#store.delete(project.id, id))) throw notFound(`immutability rule ${id} not found in project ${project.name}`);
    this.#forget(project.name);
  }

  /** The project's rules in the pure model's shape, disabled ones included (retention keeps immutable tags). */
  async rulesOf(projectId: number): Promise<ImmutableRule[]> {
    return (await this.#store.rulesOf(projectId)).map(modelRule);
  }

  // ── matching ─────────────────────────────────────────────────────────────

  /** The id of the first enabled rule making this tag of this repository immutable, if any. */
  async ruleFor(repository: string, tag: string): Promise<number | undefined> {
    const project = await this.#rulesFor(repository);
    return project?.rules.find((r) => r.matches.isImmutable(repository, tag))?.id;
  }

  /** The gate the registry runs on its write paths (ManifestService.addGates). */
  readonly gates: ManifestGates = {
    beforeTagMove: async (repository, tag, toDigest, currentDigest) => {
      const project = await this.#rulesFor(repository);
      const rule = project?.rules.find((r) => r.matches.isImmutable(repository, tag));
      if (!project || !rule) return;
      const from = await currentDigest();
      if (from === undefined || from === toDigest) return;
      throw new ManifestGateError(
        `tag ${tag} is immutable (rule ${rule.id} of project ${project.projectName}): ${repository}:${tag} points at ${from} and cannot be pushed over with other content; push a new tag instead`,
        { repository, tag, digest: from, rule: rule.id },
      );
    },
    beforeTagDelete: async (repository, tag) => {
      const project = await this.#rulesFor(repository);
      const rule = project?.rules.find((r) => r.matches.isImmutable(repository, tag));
      if (!project || !rule) return;
      throw new ManifestGateError(`tag ${tag} is immutable (rule ${rule.id} of project ${project.projectName}): ${repository}:${tag} cannot be deleted`, { repository, tag, rule: rule.id });
    },
    beforeManifestDelete: async (repository, digest) => {
      const project = await this.#rulesFor(repository);
      if (!project) return;
      const path = repositoryPathInProject(repository);
      const rules = project.rules.filter((r) => r.coversPath(path));
      if (rules.length === 0) return;
      for (const tag of await this.#tagsOfManifest(repository, digest)) {
        const rule = rules.find((r) => r.matches.isImmutable(repository, tag));
        if (rule) {
          throw new ManifestGateError(
            `tag ${tag} is immutable (rule ${rule.id} of project ${project.projectName}): ${repository}@${digest} carries it and cannot be deleted`,
            { repository, digest, tag, rule: rule.id },
          );
        }
      }
    },
    protectedTags: async (repository, tags) => {
      const project = await this.#rulesFor(repository);
      if (!project || project.rules.length === 0) return new Set();
      return new Set(tags.filter((tag) => project.rules.some((r) => r.matches.isImmutable(repository, tag))));
    },
  };

  /** The compiled enabled rules of the repository's project (cached), or undefined when it has no project. */
  #rulesFor(repository: string): Promise<ProjectRules | undefined> {
    const slash = repository.indexOf('/');
    if (slash <= 0) return Promise.resolve(undefined);
    const name = repository.slice(0, slash);
    const now = this.#now();
    const cached = this.#cache.get(name);
    if (cached && cached.expires > now) return cached.value;
    const value = this.#load(name);
    // A failed read is not remembered: the next request tries again.
    value.catch(() => {
      if (this.#cache.get(name)?.value === value) this.#cache.delete(name);
    });
    this.#cache.delete(name);
    this.#cache.set(name, { expires: now + this.#ttlMs, value });
    if (this.#cache.size > CACHE_MAX_PROJECTS) this.#cache.delete(this.#cache.keys().next().value as string);
    return value;
  }

  async #load(name: string): Promise<ProjectRules | undefined> {
    const project = await this.#projects.findByName(name);
    if (!project) return undefined;
    const rules = (await this.#store.rulesOf(project.id)).map(compileRule).filter((r): r is CompiledRule => r !== undefined);
    return { projectId: project.id, projectName: name, rules };
  }

  #forget(projectName: string): void {
    this.#cache.delete(projectName);
  }
}

/** Checks a rule from the API and normalises it; a bad selector or field is a 400 naming it. */
export function validateRule(input: ImmutableRuleInput): ImmutableRuleFields {
  if (input.action !== undefined && input.action !== IMMUTABLE_ACTION) throw badRequest(`action must be "${IMMUTABLE_ACTION}", got ${JSON.stringify(input.action)}`);
  if (input.template !== undefined && input.template !== IMMUTABLE_TEMPLATE) throw badRequest(`template must be "${IMMUTABLE_TEMPLATE}", got ${JSON.stringify(input.template)}`);
  const tagSelectors = input.tag_selectors;
  const repositorySelectors = input.scope_selectors.repository;
  if (tagSelectors.length === 0) throw badRequest('tag_selectors: a rule needs a tag selector (a rule without one matches nothing)');
  if (repositorySelectors.length === 0) throw badRequest('scope_selectors.repository: a rule needs a repository selector (a rule without one matches nothing)');
  if (tagSelectors.length > MAX_SELECTORS || repositorySelectors.length > MAX_SELECTORS) throw badRequest(`a rule has at most ${MAX_SELECTORS} selectors of each kind`);
  try {
    for (const selector of tagSelectors) compileTagSelector(selector);
    for (const selector of repositorySelectors) compileRepositorySelector(selector);
  } catch (err) {
    if (err instanceof SelectorError) throw badRequest(err.message);
    throw err;
  }
  const clean = (s: Selector): Selector => ({ kind: s.kind, decoration: s.decoration, pattern: s.pattern, ...(s.extras !== undefined && s.extras !== '' ? { extras: s.extras } : {}) });
  return {
    priority: input.priority ?? 0,
    disabled: input.disabled ?? false,
    tagSelectors: tagSelectors.map(clean),
    repositorySelectors: repositorySelectors.map(clean),
  };
}

function refuseDuplicate(others: readonly StoredImmutableRule[], fields: ImmutableRuleFields): void {
  const tags = canonical(fields.tagSelectors);
  const repositories = canonical(fields.repositorySelectors);
  const same = others.find((r) => canonical(r.tagSelectors) === tags && canonical(r.repositorySelectors) === repositories);
  if (same) throw conflict(`immutability rule ${same.id} already has these repository and tag selectors`);
}
