import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { BACKENDS, createTestDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from '../helpers/backends.ts';

for (const backend of BACKENDS) {
  describe(`database handle (${backend})`, () => {
    let testDb: TestDatabase;
    let dir: string;
    let handle: DatabaseHandle;
    const idleErrors: Error[] = [];

    before(async () => {
      testDb = await createTestDatabase(backend);
      dir = await mkdtemp(path.join(tmpdir(), 'berth-db-'));
      handle = createDatabase({
        url: testDb.url,
        sqliteFile: path.join(dir, 'berth.db'),
        poolSize: 3,
        onIdleConnectionError: (error) => idleErrors.push(error),
      });
    });
    after(async () => {
      await handle.close();
      await testDb.drop();
      await rm(dir, { recursive: true, force: true });
    });

    it('migrates a fresh database, then finds nothing left to do', async () => {
      const first = await handle.migrate();
      assert.ok(first.length >= 1, 'a fresh database runs every migration');
      assert.deepEqual(await handle.migrate(), []);
    });

    it('a transaction that reads and then writes is not failed by another connection committing in between', async () => {
      await sql`create table if not exists tx_probe (note text not null)`.execute(handle.db);
      let otherOutcome = '';
      await handle.db.transaction().execute(async (trx) => {
        await sql`select count(*) from tx_probe`.execute(trx);
        // Another connection (the audit writer thread, `berth user`, `berth gc`) writes now.
        if (backend === 'sqlite') {
          const other = new DatabaseSync(path.join(dir, 'berth.db'));
          try {
            // busy_timeout 0: it must not wait, since this thread holds the transaction open.
            other.exec('pragma busy_timeout = 0');
            other.exec(`insert into tx_probe (note) values ('other')`);
            otherOutcome = 'wrote';
          } catch (err) {
            otherOutcome = (err as Error).message;
          } finally {
            other.close();
          }
          // The transaction took the write lock when it began, so the other writer had to wait.
          assert.match(otherOutcome, /database is locked/);
        } else {
          const other = new pg.Client({ connectionString: testDb.url });
          await other.connect();
          try {
            await other.query(`insert into tx_probe (note) values ('other')`);
            otherOutcome = 'wrote';
          } finally {
            await other.end();
          }
        }
        await sql`insert into tx_probe (note) values ('mine')`.execute(trx);
      });
      const notes = await sql<{ note: string }>`select note from tx_probe order by note`.execute(handle.db);
      assert.deepEqual(notes.rows.map((r) => r.note), otherOutcome === 'wrote' ? ['mine', 'other'] : ['mine']);
    });

    if (backend === 'postgres') {
      it('survives the server killing its idle connections, reports them and reconnects', async () => {
        // Open several pooled connections, then let them go idle.
        await Promise.all([1, 2, 3].map(() => sql`select pg_sleep(0.05)`.execute(handle.db)));
        const database = new URL(testDb.url).pathname.slice(1);
        const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
        await admin.connect();
        try {
          const killed = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [database]);
          assert.ok(killed.rowCount && killed.rowCount >= 1, 'some connection was open to kill');
        } finally {
          await admin.end();
        }
        for (let i = 0; i < 50 && idleErrors.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
        assert.ok(idleErrors.length >= 1, 'the handle reported the dropped connections');
        assert.match(idleErrors[0]?.message ?? '', /terminating connection/);
        const after = await sql<{ one: number }>`select 1 as one`.execute(handle.db);
        assert.equal(Number(after.rows[0]?.one), 1);
      });
    }
  });
}
