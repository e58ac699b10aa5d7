import { cronEvery } from '../platform/jobs/scheduler.ts';
import type { JobService } from '../platform/jobs/service.ts';
import type { UploadService } from './uploads.ts';

/** Purges upload sessions idle past the expiry, with their data (idempotent; safe on any node). */
export const PURGE_UPLOADS_JOB = 'registry.purge-uploads';

/** The registry's background jobs: their handlers, and the schedules that enqueue them. */
export function registerRegistryJobs(jobs: JobService, deps: { uploads: UploadService; purgeIntervalSeconds: number }): void {
  jobs.workers.register(PURGE_UPLOADS_JOB, async (_payload, { log }) => {
    const purged = await deps.uploads.purgeExpired();
    log(`purged ${purged} expired upload sessions or stray upload files`);
  });
  jobs.schedule({ name: PURGE_UPLOADS_JOB, cron: cronEvery(deps.purgeIntervalSeconds), kind: PURGE_UPLOADS_JOB });
}
