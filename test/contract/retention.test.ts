/**
 * Tag retention on real data, on every database backend: RetentionService over a real
 * RegistryStore (with the quota ledger), ProjectService and a started JobService, with a clock the
 * test moves (push times, pull times and "now" of the day templates). Images are rows written
 * through RegistryStore, as the registry writes them on push.
 *
 * - every template on real rows: latest pushed K per repository, latest pulled N from recorded
 *   pulls, pushed/pulled within N days, always with tag patterns (doublestar and regex), excludes,
 *   untagged artifacts, repository selectors;
 * - a dry run changes nothing; the real run then deletes exactly the dry run's list, with
 *   accessories and untagged index children, and the project's quota shrinks to the survivors;
 * - immutable tags are never removed; a run can be stopped; one run per policy at a time;
 *   the cron schedule starts runs; invalid input stores nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ProjectRef } from '../../src/iam/access.ts';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { ApiError } from '../../src/platform/http/api.ts';
import { JobService } from '../../src/platform/jobs/service.ts';
import { QuotaLedger } from '../../src/projects/quota-ledger.ts';
import { ProjectService } from '../../src/projects/service.ts';
import { RegistryStore } from '../../src/registry/store.ts';
import type { ImmutableRule } from '../../src/retention/immutability.ts';
import { registerRetentionJobs } from '../../src/retention/jobs.ts';
import type { PolicyInput, RuleInput, SelectorInput } from '../../src/retention/policy.ts';
import { PullRecorder } from '../../src/retention/pull-times.ts';
import { RETENTION_RUN_JOB, RetentionService, scheduleName } from '../../src/retention/service.ts';
import { type ExecutionRecord, FINISHED, type TaskRecord } from '../../src/retention/store.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';
import { waitUntil } from '../helpers/http.ts';
import { fakeClock } from '../helpers/jobs.ts';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256 } from '../helpers/oci.ts';

const DAY = 86_400_000;

interface Image {
  readonly digest: string;
  /** Manifest plus config and layer: what the image holds in its project's quota. */
  readonly size: number;
}

const all = (): SelectorInput => ({ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' });
const tagsMatching = (pattern: string, extra: Partial<SelectorInput> = {}): SelectorInput => ({ kind: 'doublestar', decoration: 'matches', pattern, ...extra });
function rule(template: string, params: Record<string, unknown> = {}, tag: SelectorInput = tagsMatching('**'), repository: SelectorInput = all()): RuleInput {
  return { template, params, tag_selectors: [tag], scope_selectors: { repository: [repository] } };
}

for (const backend of BACKENDS) {
  describe(`tag retention on ${backend}`, () => {
    let testDatabase: TestDatabase;
    let dir: string;
    let handle: DatabaseHandle;
    const clock = fakeClock();
    let registry: RegistryStore;
    let projects: ProjectService;
    let jobs: JobService;
    let retention: RetentionService;
    let pulls: PullRecorder;
    const immutable = new Map<number, ImmutableRule[]>();
    /** When set, every run waits here before each repository (a run to stop in the middle). */
    let hold: ((repository: string, signal: AbortSignal) => Promise<void>) | undefined;

    before(async () => {
      testDatabase = await createTestDatabase(backend);
      dir = await mkdtemp(path.join(tmpdir(), 'berth-retention-'));
      handle = createDatabase({ url: testDatabase.url, sqliteFile: path.join(dir, 'berth.db') });
      await handle.migrate();
      const db = handle.db;
      registry = new RegistryStore(db, clock.now, new QuotaLedger({ now: clock.now }));
      projects = new ProjectService({ db, defaultStorageBytes: -1, now: clock.now });
      // The job service keeps real time: its scheduler fires cron schedules by the wall clock.
      jobs = new JobService({ db, concurrency: 2, pollIntervalMs: 20, leaseMs: 10_000, logLinesPerJob: 200, schedulerTickMs: 50, keepFinishedDays: 0, stopTimeoutMs: 2000 });
      retention = new RetentionService({
        db,
        registry,
        projects,
        jobs,
        now: clock.now,
        immutableRules: async (projectId) => immutable.get(projectId) ?? [],
        beforeRepository: async (repository, signal) => hold?.(repository, signal),
      });
      registerRetentionJobs(jobs, retention);
      await jobs.start();
      pulls = new PullRecorder({ db, now: clock.now });
    });
    after(async () => {
      await jobs.stop();
      await handle.close();
      await testDatabase.drop();
      await rm(dir, { recursive: true, force: true });
    });

    // ── fixtures ──

    async function project(name: string): Promise<ProjectRef> {
      const now = clock.now();
      const row = await handle.db
        .insertInto('projects')
        .values({ name, owner_id: null, public: 0, metadata: '{}', created_at: now, updated_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      await handle.db.insertInto('quotas').values({ project_id: row.id, hard: -1, used: 0, created_at: now, updated_at: now }).execute();
      return (await projects.find(Number(row.id))) as ProjectRef;
    }

    /** Pushes an image (config, one layer, manifest) at the clock's time, under `tags` (untagged when none). */
    async function push(repository: string, tags: readonly string[], options: { subject?: Image } = {}): Promise<Image> {
      const repositoryId = await registry.ensureRepository(repository);
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', nonce: randomBytes(8).toString('hex') }));
      const layer = randomBytes(300 + Math.floor(Math.random() * 200));
      for (const blob of [config, layer]) await registry.linkBlob(repositoryId, sha256(blob), blob.length);
      const manifest = {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: sha256(config), size: config.length },
        layers: [{ mediaType: OCI_LAYER, digest: sha256(layer), size: layer.length }],
        ...(options.subject ? { subject: { mediaType: OCI_MANIFEST, digest: options.subject.digest, size: 1 } } : {}),
      };
      const content = Buffer.from(JSON.stringify(manifest));
      const digest = sha256(content);
      const row = {
        digest,
        mediaType: OCI_MANIFEST,
        artifactType: null,
        subjectDigest: options.subject?.digest ?? null,
        annotations: null,
        content,
        blobDigests: [sha256(config), sha256(layer)],
        childDigests: [],
      };
      if (tags.length === 0) await registry.putManifest(repositoryId, row, null);
      for (const tag of tags) await registry.putManifest(repositoryId, row, tag);
      return { digest, size: content.length + config.length + layer.length };
    }

    async function pushIndex(repository: string, children: readonly Image[], tags: readonly string[]): Promise<Image> {
      const repositoryId = await registry.ensureRepository(repository);
      const content = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children.map((c) => ({ mediaType: OCI_MANIFEST, digest: c.digest, size: 1 })) }));
      const digest = sha256(content);
      const row = { digest, mediaType: OCI_INDEX, artifactType: null, subjectDigest: null, annotations: null, content, blobDigests: [], childDigests: children.map((c) => c.digest) };
      for (const tag of tags) await registry.putManifest(repositoryId, row, tag);
      return { digest, size: content.length };
    }

    /** Pushes one image per entry, a day apart (the clock moves), oldest first. */
    async function pushSeries(repository: string, tagLists: ReadonlyArray<readonly string[]>): Promise<Image[]> {
      const images: Image[] = [];
      for (const tags of tagLists) {
        clock.advance(DAY);
        images.push(await push(repository, tags));
      }
      return images;
    }

    const policyOf = (ref: ProjectRef, rules: RuleInput[], cron = ''): PolicyInput => ({ algorithm: 'or', rules, trigger: { kind: 'Schedule', settings: { cron } }, scope: { level: 'project', ref: ref.id } });

    async function finished(policyId: number, executionId: number): Promise<ExecutionRecord> {
      let execution: ExecutionRecord | undefined;
      await waitUntil(async () => {
        execution = await retention.execution(policyId, executionId);
        return FINISHED.includes(execution.status);
      }, `execution ${executionId} to finish`);
      return execution as ExecutionRecord;
    }

    async function run(policyId: number, dryRun: boolean): Promise<{ execution: ExecutionRecord; tasks: TaskRecord[] }> {
      const id = await retention.trigger(policyId, dryRun, 'Manual');
      const execution = await finished(policyId, id);
      return { execution, tasks: (await retention.tasks(policyId, id, 0, 100)).items };
    }

    /** Sorted digests of the repository's manifests. */
    async function digestsOf(repository: string): Promise<string[]> {
      const rows = await handle.db.selectFrom('manifests as m').innerJoin('repositories as r', 'r.id', 'm.repository_id').select('m.digest').where('r.name', '=', repository).execute();
      return rows.map((r) => r.digest).sort();
    }

    async function tagsOf(repository: string): Promise<string[]> {
      const rows = await handle.db.selectFrom('tags as t').innerJoin('repositories as r', 'r.id', 't.repository_id').select('t.name').where('r.name', '=', repository).execute();
      return rows.map((r) => r.name).sort();
    }

    const usedOf = async (ref: ProjectRef) => Number((await handle.db.selectFrom('quotas').select('used').where('project_id', '=', ref.id).executeTakeFirstOrThrow()).used);
    const removedDigests = (tasks: readonly TaskRecord[]) => tasks.flatMap((t) => t.removed.map((r) => r.digest)).sort();
    const sum = (images: readonly Image[]) => images.reduce((n, i) => n + i.size, 0);

    // ── scenarios ──

    it('latest pushed K keeps the K newest per repository; the dry run changes nothing and the run deletes exactly its list; quota shrinks', async () => {
      const ref = await project('pushed');
      const a = await pushSeries('pushed/a', [['a1'], ['a2', 'extra'], ['a3'], ['a4'], ['a5']]);
      const b = await pushSeries('pushed/team/b', [['b1'], ['b2'], ['b3']]);
      const all = [...a, ...b];
      assert.equal(await usedOf(ref), sum(all));
      const policyId = await retention.createPolicy(ref, policyOf(ref, [rule('latestPushedK', { latestPushedK: 2 })]));

      const before = { a: await digestsOf('pushed/a'), b: await digestsOf('pushed/team/b'), used: await usedOf(ref) };
      const dry = await run(policyId, true);
      assert.deepEqual([dry.execution.status, dry.execution.dryRun, dry.execution.trigger], ['Success', true, 'Manual']);
      assert.deepEqual(
        dry.tasks.map((t) => [t.repository, t.status, t.total, t.retained]),
        [
          ['pushed/a', 'Success', 5, 2],
          ['pushed/team/b', 'Success', 3, 2],
        ],
      );
      const expected = [a[0], a[1], a[2], b[0]].map((i) => i?.digest).sort();
      assert.deepEqual(removedDigests(dry.tasks), expected);
      assert.deepEqual(dry.tasks[0]?.removed.find((r) => r.digest === a[1]?.digest)?.tags, ['a2', 'extra']);
      assert.deepEqual({ a: await digestsOf('pushed/a'), b: await digestsOf('pushed/team/b'), used: await usedOf(ref) }, before, 'a dry run changes nothing');
      const log = await retention.taskLog(policyId, dry.execution.id, dry.tasks[0]?.id as number);
      assert.match(log, /Dry run: true/);
      assert.match(log, new RegExp(`DEL +${a[0]?.digest}.*would be removed`));
      assert.match(log, new RegExp(`RETAIN +${a[4]?.digest}.*rule 1 \\(latestPushedK\\)`));

      const real = await run(policyId, false);
      assert.equal(real.execution.status, 'Success');
      assert.deepEqual(removedDigests(real.tasks), removedDigests(dry.tasks), 'the run removes exactly what the dry run listed');
      assert.deepEqual(await digestsOf('pushed/a'), [a[3], a[4]].map((i) => i?.digest).sort());
      assert.deepEqual(await digestsOf('pushed/team/b'), [b[1], b[2]].map((i) => i?.digest).sort());
      assert.deepEqual(await tagsOf('pushed/a'), ['a4', 'a5']);
      assert.equal(await usedOf(ref), sum([a[3], a[4], b[1], b[2]] as Image[]), 'the quota holds exactly the survivors');

      // A second run finds nothing more to remove.
      const again = await run(policyId, false);
      assert.deepEqual(removedDigests(again.tasks), []);
      assert.deepEqual(
        again.tasks.map((t) => [t.total, t.retained]),
        [
          [2, 2],
          [2, 2],
        ],
      );
      const history = await retention.executions(policyId, 0, 10);
      assert.equal(history.total, 3);
      assert.deepEqual(
        history.items.map((e) => e.id),
        [again.execution.id, real.execution.id, dry.execution.id],
      );
    });

    it('latest pulled N keeps what was pulled most recently, from pulls recorded in batches (never moving back)', async () => {
      const ref = await project('pulled');
      const images = await pushSeries('pulled/app', [['p1'], ['p2'], ['p3'], ['p4']]);
      clock.advance(DAY);
      pulls.record('pulled/app', images[0]?.digest as string);
      clock.advance(1000);
      pulls.record('pulled/app', images[2]?.digest as string);
      pulls.record('pulled/other', images[1]?.digest as string); // no such manifest there: ignored
      assert.equal(pulls.pending, 3);
      assert.equal(await pulls.flush(), 3);
      assert.equal(pulls.pending, 0);
      const pulledAt = async (image: Image) =>
        (await handle.db.selectFrom('manifests').select('pulled_at').where('digest', '=', image.digest).executeTakeFirstOrThrow()).pulled_at;
      const newest = await pulledAt(images[2] as Image);
      assert.equal(newest, clock.now());
      // An older pull time flushed later (another node) does not move it back.
      const late = new PullRecorder({ db: handle.db, now: () => clock.now() - DAY });
      late.record('pulled/app', images[2]?.digest as string);
      await late.stop();
      assert.equal(await pulledAt(images[2] as Image), newest);

      const policyId = await retention.createPolicy(ref, policyOf(ref, [rule('latestPulledN', { latestPulledN: 2 })]));
      const dry = await run(policyId, true);
      // p3 then p1 were pulled; p2 and p4 never were.
      assert.deepEqual(removedDigests(dry.tasks), [images[1], images[3]].map((i) => i?.digest).sort());
      await run(policyId, false);
      assert.deepEqual(await tagsOf('pulled/app'), ['p1', 'p3']);
    });

    it('the day templates count from the clock: pushed within N days, pulled within N days (ORed)', async () => {
      const ref = await project('days');
      const images = await pushSeries('days/app', [['d1'], ['d2'], ['d3'], ['d4'], ['d5']]);
      // d1 was pulled recently; now is 1 day after d5's push.
      pulls.record('days/app', images[0]?.digest as string);
      await pulls.flush();
      clock.advance(DAY);
      const policyId = await retention.createPolicy(ref, policyOf(ref, [rule('nDaysSinceLastPush', { nDaysSinceLastPush: 2 }), rule('nDaysSinceLastPull', { nDaysSinceLastPull: 1 })]));
      const dry = await run(policyId, true);
      assert.deepEqual(removedDigests(dry.tasks), [images[1], images[2]].map((i) => i?.digest).sort());
      // Three days later only the pull keeps anything... and it too is 4 days old by then.
      clock.advance(3 * DAY);
      const later = await run(policyId, true);
      assert.deepEqual(removedDigests(later.tasks), images.map((i) => i.digest).sort());
      assert.equal((await digestsOf('days/app')).length, 5, 'dry runs changed nothing');
    });

    it('always with tag patterns: matches (doublestar and regex), excludes, untagged artifacts, repository selectors', async () => {
      const ref = await project('patterns');
      const [r1, r2, dev1, dev2] = await pushSeries('patterns/app', [['release-1'], ['release-2', 'latest'], ['dev-1'], ['dev-2']]);
      clock.advance(DAY);
      const untagged = await push('patterns/app', []);
      const [lib] = await pushSeries('patterns/keep/lib', [['anything']]);

      const keepReleases = await retention.createPolicy(
        ref,
        policyOf(ref, [rule('always', {}, tagsMatching('release-*', { extras: '{"untagged":false}' }), { kind: 'doublestar', decoration: 'repoExcludes', pattern: 'keep/**' })]),
      );
      let dry = await run(keepReleases, true);
      assert.deepEqual(
        dry.tasks.map((t) => t.repository),
        ['patterns/app'],
        'keep/lib is out of scope: no task',
      );
      assert.deepEqual(removedDigests(dry.tasks), [dev1, dev2, untagged].map((i) => i?.digest).sort());

      // Regex, and untagged artifacts counted as matching.
      await retention.updatePolicy(keepReleases, policyOf(ref, [rule('always', {}, { kind: 'regex', decoration: 'matches', pattern: 'release-[0-9]+', extras: '{"untagged":true}' })]));
      dry = await run(keepReleases, true);
      assert.deepEqual(removedDigests(dry.tasks), [dev1, dev2, lib].map((i) => i?.digest).sort(), 'the untagged artifact counts as a match; keep/lib is in scope now');
      assert.deepEqual(
        dry.tasks.map((t) => t.repository),
        ['patterns/app', 'patterns/keep/lib'],
      );

      // excludes: an artifact is selected when one of its tags does not match; untagged:true leaves untagged ones out.
      await retention.updatePolicy(keepReleases, policyOf(ref, [rule('always', {}, { kind: 'doublestar', decoration: 'excludes', pattern: 'dev-*', extras: '{"untagged":true}' }, { kind: 'regex', decoration: 'repoMatches', pattern: 'app' })]));
      const real = await run(keepReleases, false);
      assert.deepEqual(removedDigests(real.tasks), [dev1, dev2, untagged].map((i) => i?.digest).sort());
      assert.deepEqual(await digestsOf('patterns/app'), [r1, r2].map((i) => i?.digest).sort());
      assert.deepEqual(await tagsOf('patterns/app'), ['latest', 'release-1', 'release-2']);
      assert.deepEqual(await tagsOf('patterns/keep/lib'), ['anything']);
    });

    it('an artifact with an immutable tag is never removed, and the log says why', async () => {
      const ref = await project('frozen');
      const [old, , newest] = await pushSeries('frozen/app', [['v1'], ['v2'], ['v3']]);
      immutable.set(ref.id, [{ scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] }, tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v1' }] }]);
      const policyId = await retention.createPolicy(ref, policyOf(ref, [rule('latestPushedK', { latestPushedK: 1 })]));
      const { tasks, execution } = await run(policyId, false);
      assert.deepEqual(await tagsOf('frozen/app'), ['v1', 'v3']);
      assert.deepEqual(await digestsOf('frozen/app'), [old, newest].map((i) => i?.digest).sort());
      const log = await retention.taskLog(policyId, execution.id, tasks[0]?.id as number);
      assert.match(log, new RegExp(`RETAIN +${old?.digest}.*immutable \\(tag v1\\)`));
      assert.deepEqual([tasks[0]?.total, tasks[0]?.retained], [3, 2]);
    });

    it('removing an artifact takes its accessories and its untagged index children with it; quota shrinks to the survivors', async () => {
      const ref = await project('indexes');
      clock.advance(DAY);
      const amd = await push('indexes/multi', []);
      const arm = await push('indexes/multi', []);
      const oldIndex = await pushIndex('indexes/multi', [amd, arm], ['old']);
      const signature = await push('indexes/multi', [], { subject: oldIndex });
      clock.advance(DAY);
      const current = await push('indexes/multi', ['current']);
      const currentSignature = await push('indexes/multi', [], { subject: current });
      const policyId = await retention.createPolicy(ref, policyOf(ref, [rule('latestPushedK', { latestPushedK: 1 })]));
      const dry = await run(policyId, true);
      assert.deepEqual(removedDigests(dry.tasks), [oldIndex.digest]);
      assert.deepEqual([dry.tasks[0]?.total, dry.tasks[0]?.retained], [2, 1]);
      const real = await run(policyId, false);
      assert.deepEqual(removedDigests(real.tasks), [oldIndex.digest]);
      assert.deepEqual(await digestsOf('indexes/multi'), [current.digest, currentSignature.digest].sort());
      assert.equal(await usedOf(ref), current.size + currentSignature.size);
      const log = await retention.taskLog(policyId, real.execution.id, real.tasks[0]?.id as number);
      assert.match(log, /with 3 accessory or child manifest\(s\)/);
      assert.ok(signature.digest);
    });

    it('one run per policy at a time; a running run stops between repositories and its tasks say so', async () => {
      const ref = await project('stopping');
      for (const name of ['r1', 'r2', 'r3']) await pushSeries(`stopping/${name}`, [['x'], ['y']]);
      const policyId = await retention.createPolicy(ref, policyOf(ref, [rule('latestPushedK', { latestPushedK: 1 })]));
      let reached = '';
      hold = async (repository, signal) => {
        reached = repository;
        if (repository === 'stopping/r2') await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      };
      try {
        const id = await retention.trigger(policyId, false, 'Manual');
        await waitUntil(() => reached === 'stopping/r2', 'the run to reach the second repository');
        await assert.rejects(retention.trigger(policyId, true, 'Manual'), (err: unknown) => err instanceof ApiError && err.code === 'CONFLICT' && err.message.includes(`execution ${id}`));
        await retention.stop(policyId, id);
        const execution = await finished(policyId, id);
        assert.equal(execution.status, 'Stopped');
        const tasks = (await retention.tasks(policyId, id, 0, 10)).items;
        assert.deepEqual(
          tasks.map((t) => [t.repository, t.status]),
          [['stopping/r1', 'Success']],
        );
        assert.deepEqual(await tagsOf('stopping/r2'), ['x', 'y'], 'the stopped run did not touch the next repositories');
        await waitUntil(async () => (await jobs.queue.get(execution.jobId as number))?.status === 'cancelled', 'the job to end as cancelled');
      } finally {
        hold = undefined;
      }
      // After it, a new run may start.
      const next = await run(policyId, false);
      assert.equal(next.execution.status, 'Success');
      assert.deepEqual(await tagsOf('stopping/r3'), ['y']);
    });

    it('a queued run stops at once', async () => {
      const ref = await project('queued');
      await pushSeries('queued/app', [['x']]);
      const policyId = await retention.createPolicy(ref, policyOf(ref, [rule('always')]));
      await jobs.queue.pauseKind(RETENTION_RUN_JOB);
      try {
        const id = await retention.trigger(policyId, false, 'Manual');
        assert.equal((await retention.execution(policyId, id)).status, 'Pending');
        await retention.stop(policyId, id);
        assert.equal((await retention.execution(policyId, id)).status, 'Stopped');
      } finally {
        await jobs.queue.resumeKind(RETENTION_RUN_JOB);
      }
    });

    it("the policy's cron schedule starts runs; changing it to none or deleting the policy removes the schedule and retention_id", async () => {
      const ref = await project('scheduled');
      await pushSeries('scheduled/app', [['s1'], ['s2']]);
      const policyId = await retention.createPolicy(ref, policyOf(ref, [rule('latestPushedK', { latestPushedK: 1 })], '* * * * * *'));
      assert.equal((await projects.metadata(ref)).retention_id, String(policyId));
      assert.equal((await jobs.scheduler.get(scheduleName(policyId)))?.cron, '* * * * * *');
      await waitUntil(async () => (await retention.executions(policyId, 0, 10)).items.some((e) => e.trigger === 'Schedule' && e.status === 'Success'), 'a scheduled run to succeed', 20_000);
      assert.deepEqual(await tagsOf('scheduled/app'), ['s2']);

      await retention.updatePolicy(policyId, policyOf(ref, [rule('latestPushedK', { latestPushedK: 1 })], ''));
      assert.equal(await jobs.scheduler.get(scheduleName(policyId)), undefined);
      await retention.updatePolicy(policyId, policyOf(ref, [rule('latestPushedK', { latestPushedK: 1 })], '0 0 3 * * *'));
      assert.equal((await jobs.scheduler.get(scheduleName(policyId)))?.cron, '0 0 3 * * *');
      await retention.deletePolicy(policyId);
      assert.equal(await jobs.scheduler.get(scheduleName(policyId)), undefined);
      assert.equal((await projects.metadata(ref)).retention_id, undefined);
      await assert.rejects(retention.policy(policyId), (err: unknown) => err instanceof ApiError && err.code === 'NOT_FOUND');
      const left = await handle.db.selectFrom('retention_executions').select('id').where('policy_id', '=', policyId).execute();
      assert.deepEqual(left, [], 'its history went with it');
      // The project may have a new policy now.
      assert.ok((await retention.createPolicy(ref, policyOf(ref, [rule('always')]))) > policyId);
    });

    it('invalid policies and a second policy for a project are refused with clear errors, and nothing is stored', async () => {
      const ref = await project('invalid');
      const count = async () => Number((await handle.db.selectFrom('retention_policies').select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow()).n);
      const schedules = async () => (await jobs.scheduler.list()).length;
      const before = { policies: await count(), schedules: await schedules() };
      const bad: Array<[PolicyInput, string, RegExp]> = [
        [policyOf(ref, [rule('always')], '61 * * * *'), 'BAD_REQUEST', /cron/],
        [policyOf(ref, [rule('always', {}, { kind: 'regex', decoration: 'matches', pattern: '(unclosed' })]), 'BAD_REQUEST', /regular expression/],
        [policyOf(ref, [rule('always', {}, tagsMatching('x'.repeat(300)))]), 'BAD_REQUEST', /longer than/],
        [policyOf(ref, [rule('latestPushedK', { latestPushedK: -1 })]), 'BAD_REQUEST', /at least 1/],
        [policyOf(ref, [rule('mostRecent', { mostRecent: 1 })]), 'BAD_REQUEST', /unknown template/],
        [policyOf(ref, [rule('always'), rule('always')]), 'CONFLICT', /same as rule 0/],
      ];
      for (const [input, code, message] of bad) {
        await assert.rejects(retention.createPolicy(ref, input), (err: unknown) => err instanceof ApiError && err.code === code && message.test(err.message));
      }
      assert.deepEqual({ policies: await count(), schedules: await schedules() }, before);
      assert.equal((await projects.metadata(ref)).retention_id, undefined);

      const id = await retention.createPolicy(ref, policyOf(ref, [rule('always')]));
      await assert.rejects(retention.createPolicy(ref, policyOf(ref, [rule('latestPushedK', { latestPushedK: 1 })])), (err: unknown) => err instanceof ApiError && err.code === 'CONFLICT' && err.message.includes(`policy ${id}`));
      // An update with a bad rule changes nothing; moving the policy to another project is refused.
      await assert.rejects(retention.updatePolicy(id, policyOf(ref, [rule('latestPushedK', { latestPushedK: 0 })])), (err: unknown) => err instanceof ApiError && err.code === 'BAD_REQUEST');
      const other = await project('invalid-other');
      await assert.rejects(retention.updatePolicy(id, policyOf(other, [rule('always')])), (err: unknown) => err instanceof ApiError && err.code === 'BAD_REQUEST' && /scope.ref/.test(err.message));
      assert.equal((await retention.policy(id)).policy.rules[0]?.template, 'always');
    });
  });
}
