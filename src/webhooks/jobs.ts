/**
 * Webhook jobs. Deliveries (`webhook.deliver`) run on a worker pool of their own over the shared
 * job queue, with webhooks.concurrency workers: endpoints that are slow or dead never occupy the
 * workers of other background jobs (GC, retention …), and those never hold up deliveries, as
 * Harbor keeps its WEBHOOK queue apart. The jobs are ordinary rows of the queue: visible, pausable
 * and cancellable through the job-service API like any other kind. The daily history prune runs
 * on the app's own pool.
 */
import type { JobQueue } from '../platform/jobs/queue.ts';
import type { JobService } from '../platform/jobs/service.ts';
import { type WorkerLogger, WorkerPool } from '../platform/jobs/worker.ts';
import { DELIVER_JOB, type DeliverPayload, PRUNE_HISTORY_JOB, type WebhookService } from './service.ts';

export interface DeliveryPoolOptions {
  readonly queue: JobQueue;
  readonly concurrency: number;
  readonly pollIntervalMs: number;
  readonly leaseMs: number;
  readonly stopTimeoutMs: number;
  readonly logger?: WorkerLogger;
}

/** The pool that runs deliveries; start it with the server and stop it before the database closes. */
export function createDeliveryPool(webhooks: WebhookService, options: DeliveryPoolOptions): WorkerPool {
  const pool = new WorkerPool({
    queue: options.queue,
    concurrency: options.concurrency,
    pollIntervalMs: options.pollIntervalMs,
    leaseMs: options.leaseMs,
    stopTimeoutMs: options.stopTimeoutMs,
    ...(options.logger ? { logger: options.logger } : {}),
  });
  pool.register<DeliverPayload>(DELIVER_JOB, (payload, context) => webhooks.deliver(payload, context));
  return pool;
}

/** The daily prune of webhook history (a no-op when webhooks.historyDays is 0), on the app's job service. */
export function registerWebhookJobs(jobs: JobService, webhooks: WebhookService): void {
  jobs.workers.register(PRUNE_HISTORY_JOB, async (_payload, { log }) => webhooks.pruneHistory(log));
  jobs.schedule({ name: PRUNE_HISTORY_JOB, cron: '0 41 3 * * *', kind: PRUNE_HISTORY_JOB });
}
