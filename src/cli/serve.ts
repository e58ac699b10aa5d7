import { createApp } from '../app.ts';
import { loadConfig } from '../config/load.ts';
import type { CliFlags } from './flags.ts';
import { configOverrides } from './flags.ts';

/** `berth serve`: runs the registry until SIGINT/SIGTERM, then shuts down gracefully. */
export async function serve(flags: CliFlags): Promise<number> {
  const config = loadConfig({ file: flags.config, overrides: configOverrides(flags) });
  const app = await createApp(config);
  const url = await app.start();
  app.http.log.info({ url, dataDir: config.dataDir, database: app.database.dialect }, 'berth is serving');
  await new Promise<void>((resolve) => {
    let stopping = false;
    // A second signal while stopping is ignored: `npm start` relays the signal a terminal already
    // sent to the whole process group, and server.shutdownTimeoutSeconds bounds the wait anyway.
    const onSignal = (signal: string) => {
      app.http.log.info({ signal }, stopping ? 'already shutting down' : 'shutting down');
      if (stopping) return;
      stopping = true;
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  await app.stop();
  app.http.log.info('stopped');
  // pino buffers; make sure the last lines reach stdout before the process exits.
  await new Promise<void>((resolve) => (app.http.log as unknown as { flush(cb: () => void): void }).flush(() => resolve()));
  return 0;
}
