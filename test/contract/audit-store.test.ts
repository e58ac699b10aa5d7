/**
 * The audit log's store on every database backend: the hash chain as batches are appended (also
 * by two "nodes" at once on one database), verification finding an edited, a deleted, an added
 * and a re-hashed entry (edited directly in the database), purges that keep the rest verifiable
 * and refuse to erase a break, and searches (exact, contains, ranges, lists, sort, paging, counts,
 * keyset walks).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { type AuditEntry, type AuditRecord, canonical, chainHash, GENESIS_HASH } from '../../src/audit/entry.ts';
import { conditionsOf, sortOf } from '../../src/audit/query.ts';
import { AuditStore, ChainBrokenError } from '../../src/audit/store.ts';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';

const T0 = Date.UTC(2026, 0, 10, 12, 0, 0);

function rec(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    at: T0,
    principal: 'alice',
    principalKind: 'user',
    operation: 'create',
    resourceType: 'artifact',
    resource: 'team/app:v1',
    project: 'team',
    result: 'success',
    reason: null,
    status: 201,
    clientAddress: '10.0.0.1',
    userAgent: 'docker/27',
    requestId: 'req-1',
    description: 'push artifact',
    ...overrides,
  };
}

for (const backend of BACKENDS) {
  describe(`audit store (${backend})`, () => {
    let testDb: TestDatabase;
    let dir: string;
    let handle: DatabaseHandle;
    let store: AuditStore;
    const open = () => createDatabase({ url: testDb.url, sqliteFile: path.join(dir, 'berth.db') });

    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'berth-audit-store-'));
      testDb = await createTestDatabase(backend);
      handle = open();
      await handle.migrate();
      store = new AuditStore(handle.db);
    });
    after(async () => {
      await handle.close();
      await testDb.drop();
      await rm(dir, { recursive: true, force: true });
    });
    beforeEach(async () => {
      await handle.db.deleteFrom('audit_log').execute();
      await handle.db.updateTable('audit_chain').set({ last_id: 0, last_hash: GENESIS_HASH, checkpoint_id: 0, checkpoint_hash: GENESIS_HASH }).execute();
    });

    it('numbers entries after the head and chains their hashes from the genesis hash', async () => {
      const first = await store.append([rec(), rec({ principal: 'bob' })]);
      const second = await store.append([rec({ operation: 'pull', status: 200 })]);
      assert.deepEqual(
        [...first, ...second].map((e) => e.id),
        [1, 2, 3],
      );
      let previous = GENESIS_HASH;
      for (const entry of [...first, ...second]) {
        assert.equal(entry.hash, chainHash(previous, entry));
        previous = entry.hash;
      }
      // The hash covers every field, the id included.
      assert.equal(canonical({ ...rec(), id: 1 }), JSON.stringify([1, T0, 'alice', 'user', 'create', 'artifact', 'team/app:v1', 'team', 'success', null, 201, '10.0.0.1', 'docker/27', 'req-1', 'push artifact']));
      const head = await store.head();
      assert.deepEqual(head, { lastId: 3, lastHash: previous, checkpointId: 0, checkpointHash: GENESIS_HASH });
      const stored = await handle.db.selectFrom('audit_log').select(['id', 'hash']).orderBy('id').execute();
      assert.deepEqual(
        stored.map((r) => [Number(r.id), r.hash]),
        [...first, ...second].map((e) => [e.id, e.hash]),
      );
      const result = await store.verify();
      assert.equal(result.valid, true);
      assert.equal(result.checked, 3);
      assert.deepEqual(result.head, { id: 3, hash: previous });
      assert.equal(result.firstBreak, undefined);
    });

    it('stores text as it reads it back, so what was hashed verifies (lone surrogates, NUL, long values)', async () => {
      const [entry] = await store.append([rec({ principal: 'eve\u0000\uD800x', userAgent: 'a'.repeat(5000), resource: 'team/app:\u00e9\u{1F600}' })]);
      assert.ok(entry);
      assert.equal(entry.principal, 'eve\uFFFD\uFFFDx');
      assert.equal(entry.resource, 'team/app:\u00e9\u{1F600}');
      assert.ok((entry.userAgent ?? '').length <= 512);
      assert.equal((await store.verify()).valid, true);
    });

    it('stores in one batch texts that mean something to SQL or to array literals, and nulls, as given', async () => {
      const texts = ['NULL', '', '"quoted"', 'back\\slash', '{braces,comma}', ' spaced ', "it's", 'tab\tnew\nline', '\u00e9\u{1F600}'];
      const written = await store.append(texts.map((text, i) => rec({ principal: text || 'x', resource: `team/app:${i}`, reason: text, userAgent: text, requestId: i % 2 === 0 ? null : text, description: text, status: i % 3 === 0 ? null : 200 + i })));
      const read = new Map<number, AuditEntry>();
      for await (const entry of store.iterate([{ column: 'id', kind: 'range', min: written[0]?.id, max: written.at(-1)?.id }], { byTime: false, desc: false })) read.set(entry.id, entry);
      assert.equal(read.size, texts.length);
      for (const entry of written) assert.deepEqual(read.get(entry.id), entry, `entry ${entry.id} reads back as written`);
      // An empty optional text is stored as none (cleanRecord); the text "NULL" stays a text.
      assert.equal(read.get(written[0]?.id ?? 0)?.reason, 'NULL');
      assert.equal(read.get(written[1]?.id ?? 0)?.reason, null);
      assert.equal((await store.verify()).valid, true);
    });

    it('keeps one chain when two nodes append at once (another process on the same database)', async () => {
      const script = `
        import { createDatabase } from ${JSON.stringify(path.resolve(import.meta.dirname, '../../src/platform/db/database.ts'))};
        import { AuditStore } from ${JSON.stringify(path.resolve(import.meta.dirname, '../../src/audit/store.ts'))};
        const handle = createDatabase({ url: process.env.URL ?? '', sqliteFile: process.env.FILE ?? '' });
        const store = new AuditStore(handle.db);
        const rec = (i, j) => ({ at: Date.now(), principal: 'other-node', principalKind: 'user', operation: 'pull', resourceType: 'artifact', resource: 'team/app:v1', project: 'team', result: 'success', reason: null, status: 200, clientAddress: null, userAgent: null, requestId: 'b' + i + '-' + j, description: null });
        for (let i = 0; i < 30; i++) await store.append(Array.from({ length: 5 }, (_, j) => rec(i, j)));
        await handle.close();`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, URL: testDb.url, FILE: path.join(dir, 'berth.db') }, stdio: ['ignore', 'inherit', 'inherit'] });
      const exited = once(child, 'exit');
      for (let i = 0; i < 30; i++) await store.append(Array.from({ length: 5 }, (_, j) => rec({ requestId: `a${i}-${j}` })));
      const [code] = await exited;
      assert.equal(code, 0);
      const rows = await handle.db.selectFrom('audit_log').select(['id', 'principal']).orderBy('id').execute();
      assert.deepEqual(
        rows.map((r) => Number(r.id)),
        Array.from({ length: 300 }, (_, i) => i + 1),
      );
      assert.equal(rows.filter((r) => r.principal === 'other-node').length, 150);
      const result = await store.verify();
      assert.equal(result.valid, true, result.firstBreak?.message);
      assert.equal(result.checked, 300);
    });

    describe('verification finds changes made directly in the database', () => {
      beforeEach(async () => {
        for (let i = 0; i < 4; i++) await store.append([rec({ requestId: `r${i}a` }), rec({ requestId: `r${i}b`, principal: 'bob' })]);
        assert.equal((await store.verify()).valid, true);
      });

      it('an edited entry', async () => {
        await handle.db.updateTable('audit_log').set({ principal: 'mallory' }).where('id', '=', 3).execute();
        const result = await store.verify();
        assert.equal(result.valid, false);
        assert.deepEqual(result.firstBreak && [result.firstBreak.id, result.firstBreak.kind], [3, 'altered']);
        assert.equal(result.checked, 2);
        assert.match(result.firstBreak?.message ?? '', /entry 3 does not match its hash/);
      });

      it('an edited entry whose hash was recomputed too: the next one breaks', async () => {
        const row = await handle.db.selectFrom('audit_log').selectAll().where('id', '=', 3).executeTakeFirstOrThrow();
        const previous = await handle.db.selectFrom('audit_log').select('hash').where('id', '=', 2).executeTakeFirstOrThrow();
        const forged = { ...rec({ requestId: String(row.request_id), principal: 'mallory' }), id: 3 };
        await handle.db
          .updateTable('audit_log')
          .set({ principal: 'mallory', hash: chainHash(previous.hash, forged) })
          .where('id', '=', 3)
          .execute();
        const result = await store.verify();
        assert.deepEqual(result.firstBreak && [result.firstBreak.id, result.firstBreak.kind], [4, 'altered']);
      });

      it('a deleted entry', async () => {
        await handle.db.deleteFrom('audit_log').where('id', '=', 5).execute();
        const result = await store.verify();
        assert.deepEqual(result.firstBreak && [result.firstBreak.id, result.firstBreak.kind], [5, 'missing']);
        assert.match(result.firstBreak?.message ?? '', /entry 5 is missing/);
        assert.equal(result.checked, 4);
      });

      it('several deleted entries, and the newest ones', async () => {
        await handle.db.deleteFrom('audit_log').where('id', 'in', [2, 3]).execute();
        assert.match((await store.verify()).firstBreak?.message ?? '', /entries 2 to 3 are missing/);
        await handle.db.deleteFrom('audit_log').execute();
        const empty = await store.verify();
        assert.deepEqual(empty.firstBreak && [empty.firstBreak.id, empty.firstBreak.kind], [1, 'missing']);
        assert.match(empty.firstBreak?.message ?? '', /entries 1 to 8, the newest, are missing/);
      });

      it('the newest entry deleted along with the head moved back', async () => {
        await handle.db.deleteFrom('audit_log').where('id', '=', 8).execute();
        await handle.db.updateTable('audit_chain').set({ last_id: 7 }).execute();
        const result = await store.verify();
        assert.deepEqual(result.firstBreak && [result.firstBreak.id, result.firstBreak.kind], [7, 'head']);
      });

      it('an entry added outside the log', async () => {
        const last = await handle.db.selectFrom('audit_log').selectAll().where('id', '=', 8).executeTakeFirstOrThrow();
        await handle.db
          .insertInto('audit_log')
          .values({ ...last, id: 9 })
          .execute();
        const result = await store.verify();
        assert.deepEqual(result.firstBreak && [result.firstBreak.id, result.firstBreak.kind], [9, 'extra']);
      });
    });

    describe('purge', () => {
      beforeEach(async () => {
        for (let i = 0; i < 10; i++) await store.append([rec({ at: T0 + i * 60_000, requestId: `p${i}` })]);
      });

      it('deletes the oldest entries behind a checkpoint; the rest still verifies', async () => {
        const fifth = await handle.db.selectFrom('audit_log').select('hash').where('id', '=', 4).executeTakeFirstOrThrow();
        const result = await store.purge(4, { batchRows: 3 });
        assert.deepEqual(result, { purged: 4, checkpointId: 4, checkpointHash: fifth.hash, stopped: false });
        const ids = (await handle.db.selectFrom('audit_log').select('id').orderBy('id').execute()).map((r) => Number(r.id));
        assert.deepEqual(ids, [5, 6, 7, 8, 9, 10]);
        const verified = await store.verify();
        assert.equal(verified.valid, true, verified.firstBreak?.message);
        assert.deepEqual(verified.checkpoint, { id: 4, hash: fifth.hash });
        assert.equal(verified.checked, 6);
        // New entries chain on; the search count follows the checkpoint.
        await store.append([rec()]);
        assert.equal((await store.verify()).valid, true);
        assert.equal(await store.count([]), 7);
        // A deletion right after the checkpoint is still found.
        await handle.db.deleteFrom('audit_log').where('id', '=', 5).execute();
        assert.deepEqual((await store.verify()).firstBreak?.id, 5);
      });

      it('finds the entries older than a time, and a dry run deletes nothing', async () => {
        assert.equal(await store.lastIdBefore(T0 + 3 * 60_000), 3);
        assert.equal(await store.lastIdBefore(T0), 0);
        assert.equal(await store.lastIdBefore(T0 + 3_600_000), 10);
        const dry = await store.purge(3, { dryRun: true });
        assert.equal(dry.purged, 3);
        assert.equal(await store.count([]), 10);
        assert.equal((await store.head()).checkpointId, 0);
      });

      it('stops before an entry that does not verify, so the break stays visible', async () => {
        await handle.db.updateTable('audit_log').set({ resource: 'team/app:forged' }).where('id', '=', 3).execute();
        await assert.rejects(store.purge(6, { batchRows: 10 }), (err: unknown) => err instanceof ChainBrokenError && /entry 3 does not match/.test(err.message));
        assert.equal((await store.head()).checkpointId, 2, 'purged up to the break, not past it');
        assert.equal((await store.verify()).firstBreak?.id, 3);
        await handle.db.deleteFrom('audit_log').where('id', '=', 3).execute();
        await assert.rejects(store.purge(6), /entry 3 is missing/);
      });

      it('can be stopped between batches', async () => {
        let calls = 0;
        const result = await store.purge(10, { batchRows: 2, shouldStop: () => ++calls > 2 });
        assert.deepEqual([result.purged, result.checkpointId, result.stopped], [4, 4, true]);
        assert.equal((await store.verify()).valid, true);
      });
    });

    describe('search', () => {
      beforeEach(async () => {
        const at = (minutes: number) => T0 + minutes * 60_000;
        await store.append([
          rec({ at: at(0), principal: 'alice', operation: 'create', resource: 'team/app:v1' }),
          rec({ at: at(1), principal: 'bob', operation: 'pull', resource: 'team/app:v1', status: 200 }),
          rec({ at: at(2), principal: 'alice', operation: 'delete', resourceType: 'tag', resource: 'team/app:v1', status: 202 }),
          rec({ at: at(3), principal: 'carol', operation: 'pull', resource: 'other/db@sha256:abc', project: 'other', result: 'failure', reason: 'DENIED: no', status: 403 }),
          rec({ at: at(4), principal: 'robot$team+ci', principalKind: 'robot', operation: 'create', resource: 'team/web:100%_done', status: 201 }),
          rec({ at: at(4), principal: 'alice', operation: 'login', resourceType: 'user', resource: 'alice', project: null, status: null }),
        ]);
      });
      const find = async (q: string, sort?: string, offset = 0, limit = 100) => {
        const { total, entries } = await store.search(conditionsOf(q), sortOf(sort), offset, limit);
        return { total, ids: entries.map((e) => e.id) };
      };

      it('filters exactly, by contains (ignoring case, wildcards literal), by lists and by time ranges', async () => {
        assert.deepEqual(await find('username=alice'), { total: 3, ids: [6, 3, 1] });
        assert.deepEqual(await find('username=alice,operation=create'), { total: 1, ids: [1] });
        assert.deepEqual(await find('resource=~APP'), { total: 3, ids: [3, 2, 1] });
        assert.deepEqual(await find('resource=~100%_'), { total: 1, ids: [5] });
        assert.deepEqual(await find('resource=~0%d'), { total: 0, ids: [] });
        assert.deepEqual(await find('operation={pull delete}'), { total: 3, ids: [4, 3, 2] });
        assert.deepEqual(await find('op_time=[2026-01-10 12:01:00~2026-01-10 12:03:00]'), { total: 3, ids: [4, 3, 2] });
        assert.deepEqual(await find('op_time=[2026-01-10T12:03:00Z~]'), { total: 3, ids: [6, 5, 4] });
        assert.deepEqual(await find('op_time=[~2026-01-10T13:01:30+01:00]'), { total: 2, ids: [2, 1] });
        assert.deepEqual(await find('op_time=2026-01-10 12:04:00'), { total: 2, ids: [6, 5] });
        assert.deepEqual(await find('project=other,result=failure'), { total: 1, ids: [4] });
        assert.deepEqual(await find('operation_result=false'), { total: 1, ids: [4] });
        assert.deepEqual(await find('principal_kind=robot'), { total: 1, ids: [5] });
        assert.deepEqual(await find('id=[2~3]'), { total: 2, ids: [3, 2] });
        assert.deepEqual(await find('username=(alice alice)'), { total: 3, ids: [6, 3, 1] });
        assert.deepEqual(await find('username=(alice bob)'), { total: 0, ids: [] });
      });

      it('sorts (newest first by default, ties by id) and pages', async () => {
        assert.deepEqual((await find('')).ids, [6, 5, 4, 3, 2, 1]);
        assert.deepEqual((await find('', 'op_time')).ids, [1, 2, 3, 4, 5, 6]);
        assert.deepEqual((await find('', 'username,-id')).ids, [6, 3, 1, 2, 4, 5]);
        assert.deepEqual(await find('', '-op_time', 2, 2), { total: 6, ids: [4, 3] });
        assert.deepEqual(await find('username=alice', undefined, 2, 2), { total: 3, ids: [1] });
      });

      it('walks every match in order by keyset, a page at a time', async () => {
        const walk = async (q: string, order: { byTime: boolean; desc: boolean }) => {
          const ids: number[] = [];
          for await (const entry of store.iterate(conditionsOf(q), order, 2)) ids.push(entry.id);
          return ids;
        };
        assert.deepEqual(await walk('', { byTime: false, desc: false }), [1, 2, 3, 4, 5, 6]);
        assert.deepEqual(await walk('', { byTime: true, desc: true }), [6, 5, 4, 3, 2, 1]);
        assert.deepEqual(await walk('username=alice', { byTime: true, desc: false }), [1, 3, 6]);
        assert.deepEqual(await walk('username=nobody', { byTime: false, desc: true }), []);
      });

      it('counts without a filter from the chain head, with one by counting', async () => {
        assert.equal(await store.count([]), 6);
        assert.equal(await store.count(conditionsOf('operation=pull')), 2);
      });
    });
  });
}
