/**
 * Tag immutability rules: pure matching, not wired to the push/delete gates here.
 *
 * Harbor behaviours followed (goharbor/harbor src/pkg/immutable/match/rule/match.go):
 * - rules combine by OR: a tag is immutable when ANY enabled rule matches it;
 * - a rule matches when its repository selectors select the repository (path within the project,
 *   see selectors.ts) AND its tag selectors accept the tag; several selectors of one kind AND
 *   (Harbor's UI sends one of each; Harbor only reads the first);
 * - a rule with no repository selector or no tag selector matches nothing (Harbor `continue`s);
 * - disabled rules are skipped; untagged artifacts have no immutable tag.
 */

import { allSelect, type CompiledRepositorySelector, type CompiledTagSelector, compileRepositorySelector, compileTagSelector, repositoryPathInProject, type Selector } from './selectors.ts';

export const MAX_IMMUTABLE_RULES = 15;

export interface ImmutableRule {
  id?: string | number;
  priority?: number;
  disabled?: boolean;
  tag_selectors?: Selector[];
  scope_selectors?: { repository?: Selector[] };
}

export interface CompiledImmutableRules {
  /** Whether this tag of this repository (full name, project first) is immutable. */
  isImmutable(repository: string, tag: string): boolean;
  /** The immutable tags of an artifact, in its tag order. */
  immutableTagsOf(artifact: { repository: string; tags: readonly string[] }): string[];
}

interface CompiledRule {
  repositorySelectors: CompiledRepositorySelector[];
  tagSelectors: CompiledTagSelector[];
}

/** Compiles the rules once (throws SelectorError on a bad pattern); use for repeated checks. */
export function compileImmutableRules(rules: readonly ImmutableRule[]): CompiledImmutableRules {
  const compiled: CompiledRule[] = [];
  for (const rule of rules) {
    const repositorySelectors = (rule.scope_selectors?.repository ?? []).map(compileRepositorySelector);
    const tagSelectors = (rule.tag_selectors ?? []).map(compileTagSelector);
    if (rule.disabled === true || repositorySelectors.length === 0 || tagSelectors.length === 0) continue;
    compiled.push({ repositorySelectors, tagSelectors });
  }
  const isImmutable = (repository: string, tag: string): boolean => {
    const path = repositoryPathInProject(repository);
    return compiled.some((r) => allSelect(r.repositorySelectors, path) && r.tagSelectors.every((s) => s.acceptsTag(tag)));
  };
  return {
    isImmutable,
    immutableTagsOf: (artifact) => artifact.tags.filter((tag) => isImmutable(artifact.repository, tag)),
  };
}

/** Whether this tag of this repository (full name, project first) is immutable under the rules. */
export function isImmutable(repository: string, tag: string, rules: readonly ImmutableRule[]): boolean {
  return compileImmutableRules(rules).isImmutable(repository, tag);
}

/** The immutable tags of an artifact under the rules (empty for an untagged artifact). */
export function immutableTagsOf(artifact: { repository: string; tags: readonly string[] }, rules: readonly ImmutableRule[]): string[] {
  return compileImmutableRules(rules).immutableTagsOf(artifact);
}
