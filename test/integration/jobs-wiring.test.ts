/**
 * The job service inside a started app: the upload purge runs as the scheduled job
 * registry.purge-uploads and shows in the queue; app.stop() stops the workers gracefully and
 * gives unfinished jobs back before the database closes.
 */
import assert from 'node:assert/strict';
import { utimes } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDatabase } from '../../src/platform/db/database.ts';
import { PRUNE_FINISHED_JOBS } from '../../src/platform/jobs/service.ts';
import { PURGE_UPLOADS_JOB } from '../../src/registry/jobs.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { assertError, assertNoServerErrors, startUpload, uploadFileSize, uploadsDir, waitUntil } from '../helpers/http.ts';
import { randomBlob } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

for (const backend of BACKENDS) {
  describe(`job service in the app (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, {
        config: {
          uploads: { expireAfterSeconds: 60, purgeIntervalSeconds: 1 },
          jobs: { pollIntervalMs: 50, schedulerTickMs: 50, leaseSeconds: 5 },
          server: { shutdownTimeoutSeconds: 1 },
        },
      });
    });
    after(() => server.close());

    it('declares its schedules at start: the upload purge from uploads.purgeIntervalSeconds, and the job pruning', async () => {
      const schedules = await server.app.jobs.scheduler.list();
      const purge = schedules.find((s) => s.name === PURGE_UPLOADS_JOB);
      assert.deepEqual([purge?.cron, purge?.kind, purge?.paused], ['*/1 * * * * *', PURGE_UPLOADS_JOB, false]);
      assert.equal(schedules.find((s) => s.name === PRUNE_FINISHED_JOBS)?.kind, PRUNE_FINISHED_JOBS);
    });

    it('the scheduled purge job removes an expired upload session and its data, and succeeds in the queue', async () => {
      const { app } = server;
      const upload = await startUpload(server.url, 'jobs/expired');
      assert.equal((await fetch(new URL(upload.location, server.url), { method: 'PATCH', body: randomBlob(1500) })).status, 202);
      const fresh = await startUpload(server.url, 'jobs/fresh');
      // Age the first session past uploads.expireAfterSeconds: its row and its data file.
      const old = Date.now() - 3_600_000;
      await app.database.db.updateTable('uploads').set({ updated_at: old, created_at: old }).where('id', '=', upload.id).execute();
      await utimes(path.join(uploadsDir(server), upload.id), new Date(old), new Date(old));
      const agedAt = Date.now();

      await waitUntil(async () => (await uploadFileSize(server, upload.id)) === undefined, 'the scheduled purge to remove the upload data');
      await assertError(await fetch(new URL(upload.location, server.url)), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal((await fetch(new URL(fresh.location, server.url))).status, 204, 'a live session stays');

      let purgeJob: Awaited<ReturnType<typeof app.jobs.queue.list>>[number] | undefined;
      await waitUntil(async () => {
        const jobs = await app.jobs.queue.list({ kind: PURGE_UPLOADS_JOB, status: 'succeeded', limit: 1000 });
        for (const job of jobs) {
          if ((job.finishedAt as number) < agedAt) continue;
          const log = await app.jobs.queue.readLog(job.id);
          if (log.some((line) => /^purged [1-9]\d* /.test(line.message))) purgeJob = job;
        }
        return purgeJob !== undefined;
      }, 'a succeeded purge job that purged the session');
      assert.match(purgeJob?.dedupeKey ?? '', new RegExp(`^schedule:${PURGE_UPLOADS_JOB}:\\d{4}-\\d\\d-\\d\\dT`));
      assert.equal(purgeJob?.attempts, 1);
      const counts = await app.jobs.queue.counts();
      assert.ok(counts.some((c) => c.kind === PURGE_UPLOADS_JOB && c.status === 'succeeded' && c.count >= 1));
      assert.deepEqual(
        counts.filter((c) => c.kind === PURGE_UPLOADS_JOB && c.status === 'failed'),
        [],
      );
      assertNoServerErrors(server);
    });

    it('the job pruning deletes jobs finished longer ago than jobs.keepFinishedDays, with their logs', async () => {
      const { queue } = server.app.jobs;
      const old = await queue.enqueue({ kind: 'test.old' });
      await queue.appendLog(old, 'from long ago');
      await queue.cancel(old);
      const recent = await queue.enqueue({ kind: 'test.recent' });
      await queue.cancel(recent);
      const waiting = await queue.enqueue({ kind: 'test.unhandled' });
      const longAgo = Date.now() - 15 * 86_400_000;
      await server.app.database.db.updateTable('jobs').set({ finished_at: longAgo, created_at: longAgo }).where('id', '=', old).execute();
      const prune = await queue.enqueue({ kind: PRUNE_FINISHED_JOBS });
      await waitUntil(async () => (await queue.get(prune))?.status === 'succeeded', 'the prune job to succeed');
      assert.equal(await queue.get(old), undefined);
      assert.deepEqual(await queue.readLog(old), []);
      assert.equal((await queue.get(recent))?.status, 'cancelled');
      assert.equal((await queue.get(waiting))?.status, 'queued');
      assert.match((await queue.readLog(prune))[0]?.message ?? '', /^deleted [1-9]\d* jobs finished more than 14 days ago$/);
    });

    it('app.stop() gives a still-running job back to the queue before closing the database', async () => {
      const kind = 'test.stuck';
      let started = false;
      server.app.jobs.workers.register(kind, async (_payload: unknown, { signal }: { signal: AbortSignal }) => {
        started = true;
        // Outlives server.shutdownTimeoutSeconds, ignoring its signal.
        await new Promise<void>((resolve) => setTimeout(resolve, 60_000).unref());
        signal.throwIfAborted();
      });
      const id = await server.app.jobs.queue.enqueue({ kind });
      await waitUntil(() => started, 'the stuck job to start');
      await server.stop();
      const jobLogs = server.logs.map((line) => JSON.parse(line) as { component?: string; level: number; msg: string; job?: number }).filter((e) => e.component === 'jobs');
      assert.deepEqual(
        jobLogs.filter((e) => e.level >= 50),
        [],
        'the job service logged no error while stopping',
      );
      assert.ok(jobLogs.some((e) => e.msg === 'job given back at stop' && e.job === id));

      const reopened = createDatabase({ url: server.app.config.database.url, sqliteFile: path.join(server.dataDir, 'berth.db') });
      try {
        const row = await reopened.db.selectFrom('jobs').select(['status', 'lease_owner', 'attempts']).where('id', '=', id).executeTakeFirstOrThrow();
        assert.deepEqual({ ...row, attempts: Number(row.attempts) }, { status: 'queued', lease_owner: null, attempts: 0 });
        const running = await reopened.db.selectFrom('jobs').select('id').where('status', '=', 'running').execute();
        assert.deepEqual(running, [], 'no job is left running under a dead lease');
      } finally {
        await reopened.close();
      }
    });
  });
}
