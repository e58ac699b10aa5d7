import type { JobService } from '../platform/jobs/service.ts';
import { RETENTION_RUN_JOB, RETENTION_SCHEDULE_JOB, type RetentionService } from './service.ts';

export { RETENTION_RUN_JOB, RETENTION_SCHEDULE_JOB } from './service.ts';

/**
 * Tag retention's job handlers. The schedules are per policy and live in the scheduler's table
 * (the service writes them when a policy is created, changed or deleted), so nothing is declared
 * here at start.
 */
export function registerRetentionJobs(jobs: JobService, retention: RetentionService): void {
  jobs.workers.register<{ executionId: number }>(RETENTION_RUN_JOB, (payload, context) => retention.execute(payload.executionId, context));
  jobs.workers.register<{ policyId: number }>(RETENTION_SCHEDULE_JOB, (payload, context) => retention.runScheduled(payload.policyId, context));
}
