import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Kysely, PostgresDialect, SqliteDialect, type SqliteDatabase, type SqliteStatement } from 'kysely';
import { Migrator } from 'kysely/migration';
import pg from 'pg';
import type { DialectName } from './dialect.ts';
import { migrationProvider } from './migrations.ts';
import type { Database } from './schema.ts';

// node-pg returns int8 as a string; every int8 we store (sizes, epoch ms, ids) fits in 2^53.
pg.types.setTypeParser(20, (value) => Number(value));

export interface DatabaseOptions {
  /** postgres:// URL; empty for SQLite. */
  url: string;
  /** SQLite file path, used when url is empty. */
  sqliteFile: string;
  poolSize?: number;
  /**
   * Told about errors on idle PostgreSQL connections (the server restarted, an admin killed the
   * backend, a socket still closing after shutdown). pg emits these on the pool; without a
   * listener they would crash the process. The pool drops the broken client and opens a new one.
   */
  onIdleConnectionError?: (error: Error) => void;
}

export interface DatabaseHandle {
  readonly db: Kysely<Database>;
  readonly dialect: DialectName;
  migrate(): Promise<string[]>;
  close(): Promise<void>;
}

/** Adapts node:sqlite (built into Node, no native build) to the interface Kysely's SQLite dialect drives. */
function nodeSqlite(file: string): SqliteDatabase {
  const database = new DatabaseSync(file);
  database.exec(`
    pragma journal_mode = wal;
    pragma synchronous = normal;
    pragma foreign_keys = on;
    pragma busy_timeout = 10000;
  `);
  interface Prepared {
    readonly statement: StatementSync;
    /** Result column names; empty for statements that return no rows. */
    readonly columns: readonly string[];
  }
  const cache = new Map<string, Prepared>();
  // Rows come back as arrays and become objects here: node:sqlite's own row objects (null-prototype,
  // built per row) cost a third more CPU on multi-row reads such as tags lists.
  const toObjects = (columns: readonly string[], rows: unknown[][]) =>
    rows.map((row) => {
      const object: Record<string, unknown> = {};
      for (let i = 0; i < columns.length; i++) object[columns[i] as string] = row[i];
      return object;
    });
  return {
    close: () => database.close(),
    prepare(text: string): SqliteStatement {
      // Kysely opens every transaction with a plain (deferred) `begin`. Such a transaction that
      // reads and then writes fails at once with SQLITE_BUSY, busy_timeout or not, when another
      // connection committed in between: and the audit writer thread, `berth gc` and `berth user`
      // are such connections. An immediate transaction takes the write lock first, waiting its turn.
      const sqlText = text === 'begin' ? 'begin immediate' : text;
      let prepared = cache.get(sqlText);
      if (!prepared) {
        const statement = database.prepare(sqlText);
        statement.setReturnArrays(true);
        prepared = { statement, columns: statement.columns().map((c) => c.name) };
        if (cache.size > 500) cache.clear();
        cache.set(sqlText, prepared);
      }
      const { statement, columns } = prepared;
      return {
        reader: columns.length > 0,
        all: (parameters) => toObjects(columns, statement.all(...(parameters as never[])) as unknown as unknown[][]),
        run: (parameters) => statement.run(...(parameters as never[])),
        *iterate(parameters) {
          for (const row of statement.iterate(...(parameters as never[])) as Iterable<unknown[]>) yield toObjects(columns, [row])[0];
        },
      };
    },
  };
}

export function createDatabase(options: DatabaseOptions): DatabaseHandle {
  const dialect: DialectName = options.url ? 'postgres' : 'sqlite';
  let db: Kysely<Database>;
  if (dialect === 'postgres') {
    const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10 });
    pool.on('error', (error) => options.onIdleConnectionError?.(error));
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  } else {
    mkdirSync(path.dirname(options.sqliteFile), { recursive: true });
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: nodeSqlite(options.sqliteFile) }) });
  }
  return {
    db,
    dialect,
    async migrate() {
      const migrator = new Migrator({ db, provider: migrationProvider });
      const { error, results } = await migrator.migrateToLatest();
      if (error) throw error;
      return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
    },
    close: () => db.destroy(),
  };
}
