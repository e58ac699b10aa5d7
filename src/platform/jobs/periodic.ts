import type { FastifyBaseLogger } from 'fastify';

/**
 * Runs a piece of maintenance every `intervalMs`, one run at a time, until stopped.
 * Stand-in for the durable cron scheduler (the job service): the work it runs is idempotent,
 * so running it on every node is safe until the scheduler elects one.
 */
export class PeriodicTask {
  readonly #name: string;
  readonly #intervalMs: number;
  readonly #run: () => Promise<unknown>;
  readonly #log: FastifyBaseLogger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #stopped = true;

  constructor(name: string, intervalMs: number, run: () => Promise<unknown>, log: FastifyBaseLogger) {
    this.#name = name;
    this.#intervalMs = intervalMs;
    this.#run = run;
    this.#log = log;
  }

  start(): void {
    this.#stopped = false;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#run()
        .then((result) => this.#log.debug({ task: this.#name, result }, 'periodic task finished'))
        .catch((err: unknown) => this.#log.error({ task: this.#name, err }, 'periodic task failed'))
        .finally(() => {
          this.#running = undefined;
          this.#schedule();
        });
    }, this.#intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
