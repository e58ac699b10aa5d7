/**
 * What a retention run does to one repository, decided from its rows (pure: no I/O). The rules
 * are evaluated by retention-rules.ts; this file turns a repository's manifests and tags into
 * Harbor's candidates and the evaluator's answer into a deletion plan.
 *
 * - Candidates are the artifacts Harbor lists: manifests that are not accessories (no subject)
 *   and not untagged children of an index. An artifact's push time is the latest of its own push
 *   and its tags' pushes; its pull time is its last recorded pull (Harbor's GetCandidates).
 * - Accessories go with their subject, untagged index children with their index: they are
 *   deleted as dependents, never judged on their own.
 * - An artifact an index still references cannot be deleted while the index stays: it is kept
 *   (Harbor would fail its deletion), and so are artifacts only such an artifact references.
 * - Deletion order puts an index before the artifacts it references.
 */
import { evaluateRetention, type RetentionRule } from './retention-rules.ts';
import type { RepositoryFacts } from './store.ts';

export interface ArtifactPlan {
  readonly digest: string;
  /** Sorted. */
  readonly tags: readonly string[];
  readonly pushedAt: number;
  readonly pulledAt: number | null;
  readonly action: 'retain' | 'remove';
  /** Why, in words for the task log. */
  readonly reason: string;
}

export interface RepositoryPlan {
  readonly repository: string;
  /** False when no enabled rule selects the repository: it is left alone and gets no task. */
  readonly inScope: boolean;
  /** Every candidate, newest push first. */
  readonly artifacts: readonly ArtifactPlan[];
  /** The candidates to delete, in deletion order (an index before what it references). */
  readonly removed: readonly ArtifactPlan[];
}

export interface PlanOptions {
  readonly now: number;
  /** Whether a tag of the repository (full name) is immutable. */
  readonly isImmutable?: (repository: string, tag: string) => boolean;
}

export function planRepository(repository: string, facts: RepositoryFacts, rules: readonly RetentionRule[], options: PlanOptions): RepositoryPlan {
  const tagsOf = new Map<string, string[]>();
  const lastTagPush = new Map<string, number>();
  for (const tag of facts.tags) {
    const list = tagsOf.get(tag.digest);
    if (list) list.push(tag.name);
    else tagsOf.set(tag.digest, [tag.name]);
    lastTagPush.set(tag.digest, Math.max(lastTagPush.get(tag.digest) ?? 0, tag.updatedAt));
  }
  const parents = new Map<string, string[]>();
  for (const edge of facts.children) {
    const list = parents.get(edge.child);
    if (list) list.push(edge.parent);
    else parents.set(edge.child, [edge.parent]);
  }

  const candidates = facts.manifests
    .filter((m) => m.subjectDigest === null && (!parents.has(m.digest) || tagsOf.has(m.digest)))
    .map((m) => ({
      repository,
      digest: m.digest,
      tags: (tagsOf.get(m.digest) ?? []).slice().sort(),
      pushedAt: Math.max(m.createdAt, lastTagPush.get(m.digest) ?? 0),
      pulledAt: m.pulledAt,
    }));
  const result = evaluateRetention({ algorithm: 'or', rules: [...rules] }, candidates, { now: options.now, ...(options.isImmutable ? { isImmutable: options.isImmutable } : {}) });
  if (result.outOfScope.length === candidates.length) return { repository, inScope: false, artifacts: [], removed: [] };

  const reasons = new Map<string, string>();
  for (const kept of result.retained) {
    if (kept.retainedBy.length > 0) reasons.set(kept.artifact.digest, `retained by ${kept.retainedBy.map((r) => `rule ${r.index + 1} (${r.template})`).join(', ')}`);
    else reasons.set(kept.artifact.digest, `immutable (tag${kept.immutableTags.length === 1 ? '' : 's'} ${kept.immutableTags.join(', ')})`);
  }

  // Artifacts referenced by an index that stays cannot go (repeated: keeping one may keep another).
  const removing = new Set(result.removed.map((r) => r.artifact.digest));
  for (let changed = true; changed; ) {
    changed = false;
    for (const digest of removing) {
      const keeper = (parents.get(digest) ?? []).find((p) => !removing.has(p));
      if (keeper !== undefined) {
        removing.delete(digest);
        reasons.set(digest, `referenced by the index ${keeper}, which is kept`);
        changed = true;
      }
    }
  }

  const artifacts: ArtifactPlan[] = candidates
    .map((c) => ({
      digest: c.digest,
      tags: c.tags,
      pushedAt: c.pushedAt,
      pulledAt: c.pulledAt,
      action: removing.has(c.digest) ? ('remove' as const) : ('retain' as const),
      reason: removing.has(c.digest) ? 'no rule retains it' : (reasons.get(c.digest) ?? 'kept'),
    }))
    .sort((a, b) => b.pushedAt - a.pushedAt || (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));

  // Deletion order: an artifact after every index among the removed that references it.
  const pending = artifacts.filter((a) => a.action === 'remove');
  const removed: ArtifactPlan[] = [];
  const done = new Set<string>();
  while (pending.length > 0) {
    const ready = pending.findIndex((a) => (parents.get(a.digest) ?? []).every((p) => done.has(p) || !removing.has(p)));
    const [next] = pending.splice(Math.max(ready, 0), 1);
    if (next === undefined) break;
    removed.push(next);
    done.add(next.digest);
  }
  return { repository, inScope: true, artifacts, removed };
}
