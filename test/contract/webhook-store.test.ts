/**
 * Webhook storage on every database backend: policies (unique names per project, deleted with
 * their project, history and all), the fencing of delivery attempts (one job per attempt; a job
 * re-run after its worker stopped redoes its attempt; a stale job changes nothing), executions
 * settling when their tasks finish at the same moment in two transactions, and the history prune.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import type { WebhookTarget } from '../../src/webhooks/policy.ts';
import { WebhookNameTakenError, WebhookStore } from '../../src/webhooks/store.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';

const target: WebhookTarget = { type: 'http', address: 'http://127.0.0.1:9/hook', authHeader: '', skipCertVerify: false, payloadFormat: 'Default' };
const write = (name: string) => ({ name, description: '', targets: [target], eventTypes: ['PUSH_ARTIFACT' as const], enabled: true, sealedSecret: null });

for (const backend of BACKENDS) {
  describe(`webhook store on ${backend}`, () => {
    let testDatabase: TestDatabase;
    let dir: string;
    let handle: DatabaseHandle;
    let store: WebhookStore;
    let projectId: number;

    before(async () => {
      testDatabase = await createTestDatabase(backend);
      dir = await mkdtemp(path.join(tmpdir(), 'berth-webhook-store-'));
      handle = createDatabase({ url: testDatabase.url, sqliteFile: path.join(dir, 'berth.db') });
      await handle.migrate();
      store = new WebhookStore(handle.db);
      projectId = await project('p');
    });
    after(async () => {
      await handle.close();
      await testDatabase.drop();
      await rm(dir, { recursive: true, force: true });
    });

    async function project(name: string): Promise<number> {
      const now = Date.now();
      const row = await handle.db
        .insertInto('projects')
        .values({ name, owner_id: null, public: 0, metadata: '{}', created_at: now, updated_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      return Number(row.id);
    }

    /** An execution with `targets` tasks for a new policy; returns their ids. */
    async function execution(policyName: string, targets = 1, inProject = projectId): Promise<{ policyId: number; executionId: number; taskIds: number[] }> {
      const policyId = await store.insertPolicy(inProject, write(policyName), 'admin', Date.now());
      return handle.db.transaction().execute(async (trx) => {
        const executionId = await store.insertExecution(trx, { policyId, eventType: 'PUSH_ARTIFACT', operator: 'admin', payload: '{}', createdAt: Date.now() });
        const taskIds: number[] = [];
        for (let i = 0; i < targets; i++) taskIds.push(await store.insertTask(trx, { executionId, policyId, target, eventType: 'PUSH_ARTIFACT', body: '{}', createdAt: Date.now() }));
        return { policyId, executionId, taskIds };
      });
    }

    const finish = (taskId: number, attempt: number, ok: boolean, executionId?: number) =>
      handle.db.transaction().execute(async (trx) => {
        const done = await store.finishAttempt(
          trx,
          { taskId, attempt, startedAt: Date.now(), latencyMs: 3, statusCode: ok ? 200 : 500, error: ok ? null : 'HTTP 500' },
          { status: ok ? 'Success' : 'Pending', message: '', now: Date.now() },
        );
        if (done && executionId !== undefined) await store.settleExecution(trx, executionId, Date.now());
        return done;
      });

    it('keeps policy names unique per project, and deletes policies with their project and history', async () => {
      const other = await project('q');
      const id = await store.insertPolicy(other, write('same'), 'admin', Date.now());
      await assert.rejects(store.insertPolicy(other, write('same'), 'admin', Date.now()), WebhookNameTakenError);
      const second = await store.insertPolicy(other, write('second'), 'admin', Date.now());
      await assert.rejects(store.updatePolicy(second, write('same'), Date.now()), WebhookNameTakenError);
      await store.insertPolicy(projectId, write('same'), 'admin', Date.now());
      assert.equal((await store.policy(id))?.name, 'same');

      const { taskIds } = await execution('with-history', 1, other);
      assert.equal(await store.startAttempt(taskIds[0] as number, 1, 1, Date.now()), true);
      assert.equal(await finish(taskIds[0] as number, 1, true), true);
      await handle.db.deleteFrom('projects').where('id', '=', other).execute();
      assert.equal(await store.policy(id), undefined);
      assert.equal(await store.task(taskIds[0] as number), undefined);
      assert.deepEqual(await handle.db.selectFrom('webhook_attempts').selectAll().where('task_id', '=', taskIds[0] as number).execute(), []);
    });

    it('fences attempts: one job per attempt, a re-run of the same job redoes it, a stale job changes nothing', async () => {
      const { taskIds } = await execution('fenced');
      const task = taskIds[0] as number;
      const [jobA, jobB, jobC] = [101, 102, 103];
      assert.equal(await store.startAttempt(task, 2, jobA, Date.now()), false, 'attempt 2 before attempt 1');
      assert.equal(await store.startAttempt(task, 1, jobA, Date.now()), true);
      assert.equal(await store.startAttempt(task, 1, jobB, Date.now()), false, 'another job for the same attempt');
      assert.equal(await store.startAttempt(task, 2, jobB, Date.now()), false, 'the next attempt while this one runs');
      assert.equal(await store.startAttempt(task, 1, jobA, Date.now()), true, 'the same job again, after its worker stopped');
      assert.equal(await finish(task, 2, false), false, 'an outcome for an attempt that is not running');
      assert.equal(await finish(task, 1, false), true);
      assert.equal((await store.task(task))?.status, 'Pending');
      assert.equal(await store.startAttempt(task, 1, jobA, Date.now()), false, 'an attempt already recorded');
      assert.equal(await store.startAttempt(task, 2, jobC, Date.now()), true);
      assert.equal(await finish(task, 2, true), true);
      const attempts = (await store.attempts([task])).get(task) ?? [];
      assert.deepEqual(
        attempts.map((a) => [a.attempt, a.statusCode, a.error]),
        [
          [1, 500, 'HTTP 500'],
          [2, 200, null],
        ],
      );
      assert.deepEqual([(await store.task(task))?.status, (await store.task(task))?.runCount], ['Success', 2]);
    });

    it('hands a waiting attempt over to a later job (a deferral), from a pending task or from the job that held it', async () => {
      const { taskIds } = await execution('deferred');
      const task = taskIds[0] as number;
      const defer = (attempt: number, fromJob: number, toJob: number) => handle.db.transaction().execute((trx) => store.deferTask(trx, task, attempt, fromJob, toJob, 'busy', Date.now()));
      assert.equal(await defer(1, 201, 202), true, 'a pending task waits for the new job');
      assert.deepEqual([(await store.task(task))?.status, (await store.task(task))?.jobId], ['Pending', 202]);
      assert.equal(await store.startAttempt(task, 1, 202, Date.now()), true);
      assert.equal(await defer(1, 299, 203), false, 'a job that does not hold the running attempt');
      assert.equal(await defer(1, 202, 203), true, 'the holder (re-run after its worker stopped) gives its attempt back');
      assert.deepEqual([(await store.task(task))?.status, (await store.task(task))?.runCount, (await store.task(task))?.jobId], ['Pending', 0, 203]);
      assert.equal(await store.startAttempt(task, 1, 203, Date.now()), true);
      assert.equal(await finish(task, 1, true), true);
      assert.equal(await defer(1, 203, 204), false, 'a finished task stays finished');
    });

    it('settles an execution whose tasks finish at the same moment in two transactions', async () => {
      for (let round = 0; round < 10; round++) {
        const { executionId, taskIds } = await execution(`race-${round}`, 2);
        for (const task of taskIds) assert.equal(await store.startAttempt(task, 1, 1, Date.now()), true);
        const results = await Promise.all(taskIds.map((task) => finish(task, 1, true, executionId)));
        assert.deepEqual(results, [true, true]);
        const settled = await store.execution(executionId);
        assert.equal(settled?.status, 'Success', `round ${round}`);
        assert.notEqual(settled?.endedAt, null);
      }
    });

    it('prunes finished executions older than the cut, never running ones', async () => {
      const old = await execution('old-done');
      await store.startAttempt(old.taskIds[0] as number, 1, 1, Date.now());
      await finish(old.taskIds[0] as number, 1, true, old.executionId);
      const running = await execution('old-running');
      const young = await execution('young');
      await store.startAttempt(young.taskIds[0] as number, 1, 1, Date.now());
      await finish(young.taskIds[0] as number, 1, true, young.executionId);
      const cut = Date.now();
      await handle.db.updateTable('webhook_executions').set({ created_at: cut - 1000 }).where('id', 'in', [old.executionId, running.executionId]).execute();
      await handle.db.updateTable('webhook_executions').set({ created_at: cut + 1000 }).where('id', '=', young.executionId).execute();
      const before = (await handle.db.selectFrom('webhook_executions').select('id').execute()).length;
      const pruned = await store.pruneHistory(cut);
      assert.ok(pruned >= 1);
      assert.equal(await store.execution(old.executionId), undefined);
      assert.equal(await store.task(old.taskIds[0] as number), undefined);
      assert.equal((await store.execution(running.executionId))?.status, 'Running');
      assert.equal((await store.execution(young.executionId))?.status, 'Success');
      assert.equal((await handle.db.selectFrom('webhook_executions').select('id').execute()).length, before - pruned);
    });
  });
}
