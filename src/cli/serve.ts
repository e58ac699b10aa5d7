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
    const stop = (signal: string) => {
      app.http.log.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await app.stop();
  return 0;
}
