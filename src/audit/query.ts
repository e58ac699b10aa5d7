/**
 * Harbor's audit-log search parameters turned into store conditions: `q=` keys (username,
 * resource, resource_type, operation, op_time, and ours: project, result, principal_kind,
 * client_address, request_id, id) with exact, fuzzy (~, case-insensitive "contains"), ranges
 * ([a~b], for op_time and id) and lists ({a b}); `sort=` over op_time, id and the text columns.
 * Anything else is a 400 that names the bad part.
 */
import { badRequest, parseQ, type QueryTerm } from '../platform/http/api.ts';
import type { AuditColumn, Condition, SortKey } from './store.ts';

/** q= keys and the columns they filter. */
const KEYS: Record<string, AuditColumn> = {
  username: 'principal',
  resource: 'resource',
  resource_type: 'resource_type',
  operation: 'operation',
  op_time: 'at',
  project: 'project',
  result: 'result',
  operation_result: 'result',
  principal_kind: 'principal_kind',
  client_address: 'client_address',
  request_id: 'request_id',
  id: 'id',
};

const SORT_KEYS: Record<string, AuditColumn> = {
  op_time: 'at',
  id: 'id',
  username: 'principal',
  resource: 'resource',
  resource_type: 'resource_type',
  operation: 'operation',
};

export const QUERY_KEYS = Object.keys(KEYS);
export const SORT_FIELDS = Object.keys(SORT_KEYS);

/**
 * A time as Harbor's q= takes it: "2020-04-09 02:36:00" (UTC), a date (midnight UTC) or RFC 3339
 * ("2020-04-09T02:36:00Z", "…+02:00", fractions of a second). Returns epoch ms, or undefined.
 */
export function parseTime(text: string): number | undefined {
  const harbor = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$/i.exec(text.trim());
  if (!harbor) return undefined;
  const [, y, mo, d, h = '00', mi = '00', s = '00', fraction = '', zone = 'Z'] = harbor;
  const iso = `${y}-${mo}-${d}T${h}:${mi}:${s}${fraction.slice(0, 4)}${zone.toUpperCase() === 'Z' ? 'Z' : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone}`;
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return undefined;
  // Date.parse rolls 2020-02-31 over to March: refuse dates that do not exist.
  const check = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (check.getUTCFullYear() !== Number(y) || check.getUTCMonth() !== Number(mo) - 1 || check.getUTCDate() !== Number(d)) return undefined;
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined;
  return ms;
}

/** Whether a time was given to the second or finer (an exact op_time covers that second, or that day for a date). */
function timeWindow(text: string): number {
  return /[ T]\d{2}:\d{2}/i.test(text.trim()) ? 1000 : 86_400_000;
}

function timeValue(key: string, text: string): number {
  const ms = parseTime(text);
  if (ms === undefined) throw badRequest(`q: ${key} takes a time like "2020-04-09 02:36:00" (UTC) or RFC 3339 "2020-04-09T02:36:00Z", got "${text}"`);
  return ms;
}

function idValue(key: string, text: string): number {
  if (!/^[0-9]{1,15}$/.test(text)) throw badRequest(`q: ${key} takes a whole number, got "${text}"`);
  return Number(text);
}

function textValue(key: string, column: AuditColumn, text: string): string | number {
  if (column === 'result') {
    const normalized = text.toLowerCase();
    if (key === 'operation_result') {
      if (normalized === 'true') return 'success';
      if (normalized === 'false') return 'failure';
      throw badRequest(`q: operation_result takes true or false, got "${text}"`);
    }
    if (normalized !== 'success' && normalized !== 'failure') throw badRequest(`q: result takes success or failure, got "${text}"`);
    return normalized;
  }
  if (column === 'id') return idValue(key, text);
  if (text.length > 1024) throw badRequest(`q: the value of ${key} is longer than 1024 characters`);
  return text;
}

function conditionOf(key: string, term: QueryTerm): Condition {
  const column = KEYS[key];
  if (column === undefined) throw badRequest(`q: unknown key "${key}"; use ${QUERY_KEYS.join(', ')}`);
  const time = column === 'at';
  switch (term.kind) {
    case 'exact': {
      if (term.value === '') throw badRequest(`q: ${key} needs a value`);
      if (time) {
        const at = timeValue(key, term.value);
        return { column, kind: 'range', min: at, max: at + timeWindow(term.value) - 1 };
      }
      return { column, kind: 'eq', value: textValue(key, column, term.value) };
    }
    case 'fuzzy':
      if (time || column === 'id' || column === 'result') throw badRequest(`q: ${key} does not take a fuzzy (~) match; use a range [min~max]`);
      if (term.value === '') throw badRequest(`q: ${key}=~ needs a value`);
      return { column, kind: 'contains', value: String(textValue(key, column, term.value)) };
    case 'range': {
      if (!time && column !== 'id') throw badRequest(`q: only op_time and id take a range [min~max], not ${key}`);
      if (term.min === undefined && term.max === undefined) throw badRequest(`q: the range of ${key} needs a minimum, a maximum or both`);
      const value = (text: string | undefined) => (text === undefined ? undefined : time ? timeValue(key, text) : idValue(key, text));
      const min = value(term.min);
      let max = value(term.max);
      // A maximum given to the second covers that whole second.
      if (time && max !== undefined && term.max !== undefined) max += timeWindow(term.max) - 1;
      if (min !== undefined && max !== undefined && min > max) throw badRequest(`q: the range of ${key} has its minimum after its maximum`);
      return { column, kind: 'range', min, max };
    }
    case 'or': {
      if (term.values.length === 0) throw badRequest(`q: the list of ${key} is empty`);
      if (term.values.length > 100) throw badRequest(`q: the list of ${key} has more than 100 values`);
      if (time) throw badRequest(`q: ${key} does not take a list; use a range [min~max]`);
      return { column, kind: 'in', values: term.values.map((v) => textValue(key, column, v)) };
    }
    case 'and': {
      // Every value at once: only possible when they are all the same value.
      if (term.values.length === 0) throw badRequest(`q: the list of ${key} is empty`);
      if (time) throw badRequest(`q: ${key} does not take a list; use a range [min~max]`);
      const values = [...new Set(term.values.map((v) => textValue(key, column, v)))];
      return values.length === 1 ? { column, kind: 'eq', value: values[0] as string | number } : { column, kind: 'in', values: [] };
    }
  }
}

/** The conditions of a q= parameter; a 400 for a malformed or unknown part. */
export function conditionsOf(q: string | undefined): Condition[] {
  if (q !== undefined && q.length > 4096) throw badRequest('q is longer than 4096 characters');
  const terms = parseQ(q);
  return [...terms].map(([key, term]) => conditionOf(key, term));
}

/** sort=op_time,-id …; newest first when absent. The last key is always the id (a stable order). */
export function sortOf(sort: string | undefined): SortKey[] {
  const keys: SortKey[] = [];
  if (sort !== undefined && sort.trim() !== '') {
    for (const raw of sort.split(',')) {
      const part = raw.trim();
      const desc = part.startsWith('-');
      const name = desc ? part.slice(1) : part.replace(/^\+/, '');
      const column = SORT_KEYS[name];
      if (column === undefined) throw badRequest(`sort: unknown field "${name}"; use ${SORT_FIELDS.join(', ')} (with - for descending)`);
      if (keys.some((k) => k.column === column)) throw badRequest(`sort: ${name} is given twice`);
      keys.push({ column, desc });
    }
  }
  if (keys.length === 0) keys.push({ column: 'at', desc: true });
  if (!keys.some((k) => k.column === 'id')) keys.push({ column: 'id', desc: (keys[0] as SortKey).desc });
  return keys;
}

/** The order an export walks in: by op_time or id only (a keyset walk). */
export function exportOrderOf(sort: string | undefined): { byTime: boolean; desc: boolean } {
  if (sort === undefined || sort.trim() === '') return { byTime: false, desc: false };
  const keys = sortOf(sort);
  const first = keys[0] as SortKey;
  if (first.column !== 'at' && first.column !== 'id') throw badRequest('sort: an export is ordered by op_time or id (with - for descending)');
  const extra = keys.slice(1).filter((k) => k.column !== 'id');
  if (extra.length > 0) throw badRequest('sort: an export is ordered by op_time or id (with - for descending)');
  return { byTime: first.column === 'at', desc: first.desc };
}
