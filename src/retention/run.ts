/**
 * One retention run (the body of the `retention.run` job): every repository of the project, in
 * name order, is evaluated (plan.ts) and, unless the run is a dry run, the artifacts no rule
 * retains are deleted with their accessories and untagged index children, through RegistryStore
 * (which releases the project's quota). Each repository in the policy's scope gets a task with
 * its counts, the artifacts removed (or, in a dry run, to be removed) and a text log.
 *
 * A run is idempotent: a retried attempt closes the tasks the interrupted one left open and
 * evaluates what is left. Stopping is checked between repositories and between deletions. Right
 * before a deletion the artifact's tags are read again: one that was tagged since it was
 * evaluated is skipped, so a push racing a run never loses its tag.
 */
import { JobAbortedError, type JobContext } from '../platform/jobs/worker.ts';
import type { RegistryStore } from '../registry/store.ts';
import { compileImmutableRules, type ImmutableRule } from './immutability.ts';
import { type ArtifactPlan, planRepository } from './plan.ts';
import type { RetentionRule } from './retention-rules.ts';
import type { RetentionProjects } from './service.ts';
import { FINISHED, type RemovedArtifactRecord, type RetentionStore, type TaskStatus } from './store.ts';

export interface RetentionRunDeps {
  readonly store: RetentionStore;
  readonly registry: RegistryStore;
  readonly projects: RetentionProjects;
  readonly immutableRules: (projectId: number) => Promise<readonly ImmutableRule[]>;
  readonly now: () => number;
  readonly beforeRepository?: (repository: string, signal: AbortSignal) => Promise<void>;
}

function iso(ms: number | null): string {
  return ms === null || ms <= 0 ? '-' : new Date(ms).toISOString();
}

function artifactLine(mark: string, a: ArtifactPlan, note: string): string {
  return `${mark.padEnd(6)} ${a.digest}  tags=${a.tags.length > 0 ? a.tags.join(',') : '<none>'}  pushed=${iso(a.pushedAt)}  pulled=${iso(a.pulledAt)}  ${note}`;
}

function sameTags(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

/** Whether the abort means "this node gives the job up" (stopping, or the lease went elsewhere) rather than "stop the run". */
function givenUp(signal: AbortSignal): boolean {
  const reason: unknown = signal.reason;
  return reason instanceof JobAbortedError && reason.reason !== 'cancelled';
}

export class RetentionRun {
  readonly #deps: RetentionRunDeps;

  constructor(deps: RetentionRunDeps) {
    this.#deps = deps;
  }

  async execute(executionId: number, context: JobContext): Promise<void> {
    const { store, now } = this.#deps;
    const { signal, log } = context;
    const execution = await store.execution(executionId);
    if (!execution || FINISHED.includes(execution.status)) return log(`execution ${executionId} is ${execution ? execution.status : 'gone'}; nothing to do`);
    const policy = await store.policy(execution.policyId);
    const project = policy ? await this.#deps.projects.find(policy.projectId) : undefined;
    if (!policy || !project) {
      await store.setExecutionStatus(executionId, 'Error', now());
      return log(`the policy or its project no longer exists; execution ${executionId} ends in error`, 'error');
    }
    const reopened = await store.closeUnfinishedTasks(executionId, 'Error', 'interrupted; a later attempt of the run took the work up again', now());
    if (reopened > 0) log(`closed ${reopened} task(s) an interrupted attempt left open`, 'warn');
    await store.setExecutionStatus(executionId, 'Running', now());

    const immutable = compileImmutableRules(await this.#deps.immutableRules(project.id));
    const rules = policy.policy.rules as RetentionRule[];
    const dryRun = execution.dryRun;
    log(`retention ${dryRun ? 'dry run' : 'run'} of project ${project.name} (policy ${policy.id}, ${rules.length} rule(s))`);
    let failed = 0;
    let stopped = false;
    try {
      for (const repository of await store.repositoriesOf(project.name)) {
        if (signal.aborted) break;
        await this.#deps.beforeRepository?.(repository.name, signal);
        if (signal.aborted) break;
        const facts = await store.repositoryFacts(repository.id);
        const plan = planRepository(repository.name, facts, rules, { now: now(), isImmutable: immutable.isImmutable });
        if (!plan.inScope) continue;

        const taskId = await store.insertTask(executionId, repository.name, now());
        const lines = [
          `Repository: ${repository.name}`,
          `Dry run: ${dryRun}`,
          `Candidates: ${plan.artifacts.length}, to remove: ${plan.removed.length}`,
          '',
          ...plan.artifacts.filter((a) => a.action === 'retain').map((a) => artifactLine('RETAIN', a, a.reason)),
        ];
        const removed: RemovedArtifactRecord[] = [];
        let errors = 0;
        for (const artifact of plan.removed) {
          if (signal.aborted) break;
          if (dryRun) {
            removed.push({ repository: repository.name, digest: artifact.digest, tags: artifact.tags });
            lines.push(artifactLine('DEL', artifact, `would be removed: ${artifact.reason} (dry run)`));
            continue;
          }
          try {
            const tagsNow = await store.tagsOf(repository.id, artifact.digest);
            if (!(await store.manifestExists(repository.id, artifact.digest))) {
              lines.push(artifactLine('SKIP', artifact, 'already gone'));
            } else if (!sameTags(tagsNow, artifact.tags)) {
              lines.push(artifactLine('SKIP', artifact, `its tags changed during the run (now ${tagsNow.join(',') || '<none>'}); kept`));
            } else {
              const dependents = await this.#delete(repository.id, artifact.digest);
              removed.push({ repository: repository.name, digest: artifact.digest, tags: artifact.tags });
              lines.push(artifactLine('DEL', artifact, `removed: ${artifact.reason}${dependents > 0 ? ` (with ${dependents} accessory or child manifest(s))` : ''}`));
            }
          } catch (err) {
            errors++;
            lines.push(artifactLine('ERR', artifact, `could not be removed: ${(err as Error).message}`));
          }
        }
        const interrupted = signal.aborted;
        if (interrupted) lines.push('', givenUp(signal) ? 'Interrupted: this node gave the job up; a later attempt continues' : 'Stopped');
        const status: TaskStatus = interrupted ? 'Stopped' : errors > 0 ? 'Error' : 'Success';
        lines.push('', `Result: ${status}; ${removed.length} ${dryRun ? 'to remove' : 'removed'}, ${plan.artifacts.length - removed.length} retained of ${plan.artifacts.length}`);
        await store.updateTask(taskId, { status, total: plan.artifacts.length, retained: plan.artifacts.length - removed.length, removed, log: `${lines.join('\n')}\n`, endTime: now() });
        if (errors > 0) failed++;
        log(`${repository.name}: ${plan.artifacts.length} artifact(s), ${removed.length} ${dryRun ? 'to remove' : 'removed'}${errors > 0 ? `, ${errors} error(s)` : ''}`);
        if (interrupted) break;
      }
      stopped = signal.aborted;
    } catch (err) {
      // The last attempt's failure is the run's; an earlier one is retried by the job service.
      if (context.job.attempts >= context.job.maxAttempts) {
        await store.closeUnfinishedTasks(executionId, 'Error', `failed: ${(err as Error).message}`, now());
        await store.setExecutionStatus(executionId, 'Error', now());
      }
      throw err;
    }
    if (stopped && givenUp(signal)) return log('this node gave the run up; another attempt continues it', 'warn');
    const status = stopped ? 'Stopped' : failed > 0 ? 'Error' : 'Success';
    await store.setExecutionStatus(executionId, status, now());
    log(`execution ${executionId}: ${status}`);
  }

  /**
   * Deletes a manifest, then its accessories, then the index children no other index references
   * and no tag names (Harbor's artifact deletion). Returns how many dependents went with it.
   */
  async #delete(repositoryId: number, digest: string): Promise<number> {
    const { store, registry } = this.#deps;
    const [children, accessories] = await Promise.all([store.childrenOf(repositoryId, digest), store.accessoriesOf(repositoryId, digest)]);
    await registry.deleteManifest(repositoryId, digest);
    let dependents = 0;
    for (const accessory of accessories) dependents += 1 + (await this.#delete(repositoryId, accessory));
    for (const child of children) {
      if ((await store.parentsOf(repositoryId, child)).length > 0) continue;
      if ((await store.tagsOf(repositoryId, child)).length > 0) continue;
      if (!(await store.manifestExists(repositoryId, child))) continue;
      dependents += 1 + (await this.#delete(repositoryId, child));
    }
    return dependents;
  }
}
