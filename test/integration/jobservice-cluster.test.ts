/**
 * The job service's worker pools across nodes: every node announces its pools (jobs, webhook
 * deliveries) and beats, so GET /jobservice/pools on any node lists every live pool, and a pool's workers (busy with the
 * jobs it holds leases on, then idle) can be read from another node. A node that stops
 * gracefully leaves the list.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JobContext } from '../../src/platform/jobs/worker.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, apiJson, assertApiError, api } from '../helpers/harbor-api.ts';
import { closeCluster, waitUntil } from '../helpers/http.ts';
import type { WorkerJson } from '../helpers/jobs.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const CONCURRENCY = 2;
/** A kind only the second node runs: its job shows on the second node's pool. */
const SECOND_ONLY = 'test.second-only';

interface PoolJson {
  worker_pool_id: string;
  pid: number;
  host: string;
  start_at: string;
  heartbeat_at: string;
  concurrency: number;
  job_kinds: string[];
}

for (const backend of BACKENDS) {
  describe(`job-service pools on a cluster of two nodes (${backend})`, () => {
    let first: TestServer;
    let second: TestServer;
    let release: (() => void) | undefined;

    before(async () => {
      first = await startTestServer(backend, { config: { auth: { enabled: true }, jobs: { concurrency: CONCURRENCY, pollIntervalMs: 50, leaseSeconds: 3 }, webhooks: { concurrency: CONCURRENCY } } });
      second = await first.addNode();
      second.app.jobs.workers.register(SECOND_ONLY, (_payload: unknown, context: JobContext) => {
        return new Promise<void>((resolve, reject) => {
          release = resolve;
          context.signal.addEventListener('abort', () => reject(context.signal.reason));
        });
      });
    });
    after(async () => {
      release?.();
      await closeCluster(first, second);
    });

    const pools = async (node: TestServer) => (await apiJson<PoolJson[]>(node.url, '/jobservice/pools', 200, { auth: ADMIN })).body;
    const workersOf = async (node: TestServer, poolId: string) =>
      (await apiJson<WorkerJson[]>(node.url, `/jobservice/pools/${encodeURIComponent(poolId)}/workers`, 200, { auth: ADMIN })).body;

    it('every node lists the pools of both (jobs and webhook deliveries), each with its own kinds, and the workers of the other', async () => {
      const ids = [first.app.jobs.workers.workerId, second.app.jobs.workers.workerId, first.app.webhookDeliveries.workerId, second.app.webhookDeliveries.workerId];
      assert.equal(new Set(ids).size, 4);
      await waitUntil(async () => (await pools(first)).find((p) => p.worker_pool_id === ids[1])?.job_kinds.includes(SECOND_ONLY) === true, 'the second pool announced with its kinds');
      for (const node of [first, second]) {
        const listed = await pools(node);
        assert.deepEqual(listed.map((p) => p.worker_pool_id).sort(), [...ids].sort());
        for (const pool of listed) {
          assert.equal(pool.pid, process.pid);
          assert.equal(pool.concurrency, CONCURRENCY);
          assert.ok(Date.parse(pool.start_at) <= Date.parse(pool.heartbeat_at));
        }
        assert.equal(listed.find((p) => p.worker_pool_id === ids[0])?.job_kinds.includes(SECOND_ONLY), false);
        const all = await workersOf(node, 'all');
        assert.equal(all.length, 4 * CONCURRENCY);
        assert.deepEqual([...new Set(all.map((w) => w.pool_id))].sort(), [...ids].sort());
        for (const id of ids) assert.equal((await workersOf(node, id)).length, CONCURRENCY);
      }
      await assertApiError(await api(first.url, '/jobservice/pools/someone-else/workers', { auth: ADMIN }), 404, 'NOT_FOUND');
    });

    it("a job the second node runs shows as a busy worker of its pool on the first node", async () => {
      const secondId = second.app.jobs.workers.workerId;
      const id = await first.app.jobs.queue.enqueue({ kind: SECOND_ONLY, maxAttempts: 1 });
      await waitUntil(() => release !== undefined, 'the second node to run the job');
      await waitUntil(async () => (await workersOf(first, secondId)).some((w) => w.job_id === String(id)), 'the first node to see the job on the second pool');
      const workers = await workersOf(first, secondId);
      const busy = workers.filter((w) => w.job_id !== undefined);
      assert.deepEqual(
        busy.map((w) => [w.job_id, w.job_name, w.pool_id]),
        [[String(id), SECOND_ONLY, secondId]],
      );
      assert.ok(Date.parse(busy[0]?.start_at ?? '') > 0);
      assert.equal(workers.length, CONCURRENCY);
      // The first node's own pool runs nothing of it.
      assert.ok((await workersOf(first, first.app.jobs.workers.workerId)).every((w) => w.job_id === undefined));
      release?.();
      await waitUntil(async () => (await first.app.jobs.queue.get(id))?.status === 'succeeded', 'the job to finish');
    });

    it('a node that stops leaves the list', async () => {
      const secondId = second.app.jobs.workers.workerId;
      await second.stop();
      const listed = await pools(first);
      assert.deepEqual(listed.map((p) => p.worker_pool_id).sort(), [first.app.jobs.workers.workerId, first.app.webhookDeliveries.workerId].sort());
      await assertApiError(await api(first.url, `/jobservice/pools/${encodeURIComponent(secondId)}/workers`, { auth: ADMIN }), 404, 'NOT_FOUND');
    });
  });
}
