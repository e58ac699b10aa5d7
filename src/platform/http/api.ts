/**
 * Plumbing of the Harbor-compatible management API under /api/v2.0: its error shape, strict body
 * validation, paging headers and the `q=` query syntax. Capabilities register their routes inside
 * `managementApi`'s scope; nothing here knows users or projects.
 */
import { Ajv } from 'ajv';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaCompiler } from 'fastify';
import { OciError } from '../oci/errors.ts';
import { statusOf } from './errors.ts';

/** Harbor's error codes and their statuses (src/lib/errors/const.go). */
export const API_ERROR_STATUS = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  DENIED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PRECONDITION: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNPROCESSABLE_ENTITY: 422,
  TOO_MANY_REQUESTS: 429,
  INTERNAL_SERVER_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
} as const;
export type ApiErrorCode = keyof typeof API_ERROR_STATUS;

export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly headers: Record<string, string> | undefined;
  constructor(code: ApiErrorCode, message: string, headers?: Record<string, string>) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.headers = headers;
  }
  get status(): number {
    return API_ERROR_STATUS[this.code];
  }
}

export const badRequest = (message: string) => new ApiError('BAD_REQUEST', message);
export const notFound = (message: string) => new ApiError('NOT_FOUND', message);
export const conflict = (message: string) => new ApiError('CONFLICT', message);
export const forbidden = (message: string) => new ApiError('FORBIDDEN', message);

export function apiErrorBody(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message }] });
}

/** OCI codes thrown by registry services the API reuses keep their status; the code becomes Harbor's word for it. */
function fromOciError(err: OciError): ApiError {
  const status = statusOf(err.code);
  const code = (Object.entries(API_ERROR_STATUS).find(([, s]) => s === status)?.[0] ?? 'INTERNAL_SERVER_ERROR') as ApiErrorCode;
  return new ApiError(code, status >= 500 ? 'internal error' : err.message);
}

/** Maps anything a handler threw to an ApiError: ours, Fastify's (validation, parsing, media type) or a 500. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof OciError) return fromOciError(err);
  const e = err as { statusCode?: number; code?: string; message?: string; validation?: unknown; validationContext?: string } | null;
  // Fastify's own wording names the part and the field: "body/project_name must NOT have more than 255 characters".
  if (e?.validation) {
    const first = (e.validation as Array<{ keyword?: string; params?: { additionalProperty?: string } }>)[0];
    const extra = first?.keyword === 'additionalProperties' ? first.params?.additionalProperty : undefined;
    return new ApiError('BAD_REQUEST', extra !== undefined ? `${e.message}: unknown field "${extra}"` : (e.message ?? `invalid ${e.validationContext ?? 'request'}`));
  }
  switch (e?.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('UNSUPPORTED_MEDIA_TYPE', 'unsupported Content-Type; send application/json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('PAYLOAD_TOO_LARGE', 'request body too large');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('BAD_REQUEST', 'the request body is empty; send a JSON document');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('BAD_REQUEST', `malformed JSON: ${e.message ?? ''}`);
  }
  if (e instanceof SyntaxError || e?.statusCode === 400) return new ApiError('BAD_REQUEST', `malformed request: ${e?.message ?? ''}`);
  if (typeof e?.statusCode === 'number' && e.statusCode > 400 && e.statusCode < 500) {
    const code = (Object.entries(API_ERROR_STATUS).find(([, s]) => s === e.statusCode)?.[0] ?? 'BAD_REQUEST') as ApiErrorCode;
    return new ApiError(code, e.message ?? 'bad request');
  }
  return new ApiError('INTERNAL_SERVER_ERROR', 'internal error');
}

export function sendApiError(reply: FastifyReply, error: ApiError): FastifyReply {
  if (error.headers) reply.headers(error.headers);
  const body = apiErrorBody(error.code, error.message);
  reply.code(error.status).header('content-type', 'application/json; charset=utf-8');
  if (reply.request.method === 'HEAD') return reply.header('content-length', Buffer.byteLength(body)).send();
  return reply.send(body);
}

// Bodies are validated strictly: a wrong type is an error, never coerced, and an unknown field is
// an error, never silently dropped. Query strings and path parameters arrive as text and are coerced.
const strictAjv = new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: true, strict: false });
const lenientAjv = new Ajv({ allErrors: false, coerceTypes: 'array', removeAdditional: false, useDefaults: true, strict: false });
const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => {
  const ajv = httpPart === 'body' ? strictAjv : lenientAjv;
  return ajv.compile(schema as object) as ReturnType<FastifySchemaCompiler<unknown>>;
};

/**
 * Sets up an API scope: Harbor's error shape for everything thrown inside it (404s and
 * validation errors included) and the strict validator. Call inside the scope's plugin.
 */
export function useManagementApiConventions(app: FastifyInstance, options: { notFound?: boolean } = {}): void {
  app.setValidatorCompiler(validatorCompiler);
  // Some clients send Content-Type: application/json on a DELETE or GET without a body; that is no body, not bad JSON.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') {
      done(null, undefined);
      return;
    }
    // The default parser calls `done` itself; its return value carries nothing.
    void parseJson(request, body as string, done);
  });
  app.setErrorHandler((err, request, reply) => {
    const error = toApiError(err);
    if (error.status >= 500) request.log.error({ err }, 'unhandled error');
    return sendApiError(reply, error);
  });
  // Only a prefixed scope (the /api/v2.0 one) may own a not-found handler; root-level scopes keep the server's.
  if (options.notFound !== false) app.setNotFoundHandler((request, reply) => sendApiError(reply, notFound(`no route for ${request.method} ${request.url.split('?')[0]}`)));
}

// ── paging ────────────────────────────────────────────────────────────────

export interface PageParams {
  readonly page: number;
  readonly pageSize: number;
  readonly offset: number;
}

export const PAGE_SIZE_DEFAULT = 10;
export const PAGE_SIZE_MAX = 100;

/** page (from 1, default 1) and page_size (1..100, default 10), as Harbor takes them. */
export function pageParams(query: { page?: unknown; page_size?: unknown }): PageParams {
  const page = query.page === undefined || query.page === '' ? 1 : Number(query.page);
  const pageSize = query.page_size === undefined || query.page_size === '' ? PAGE_SIZE_DEFAULT : Number(query.page_size);
  if (!Number.isInteger(page) || page < 1) throw badRequest(`page must be a whole number from 1, got "${String(query.page)}"`);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > PAGE_SIZE_MAX) {
    throw badRequest(`page_size must be a whole number from 1 to ${PAGE_SIZE_MAX}, got "${String(query.page_size)}"`);
  }
  return { page, pageSize, offset: (page - 1) * pageSize };
}

/** X-Total-Count and a Link header with prev/next pages, keeping the request's other query parameters. */
export function setPageHeaders(request: FastifyRequest, reply: FastifyReply, params: PageParams, total: number): void {
  reply.header('x-total-count', String(total));
  const [path, search = ''] = request.url.split('?', 2) as [string, string?];
  const links: string[] = [];
  const at = (page: number) => {
    const q = new URLSearchParams(search);
    q.set('page', String(page));
    q.set('page_size', String(params.pageSize));
    return `<${path}?${q.toString()}>`;
  };
  if (params.page > 1) links.push(`${at(params.page - 1)}; rel="prev"`);
  if (params.offset + params.pageSize < total) links.push(`${at(params.page + 1)}; rel="next"`);
  if (links.length > 0) reply.header('link', links.join(' , '));
}

// ── the q= query syntax ───────────────────────────────────────────────────

/** One term of Harbor's q= syntax (src/lib/q/query.go). */
export type QueryTerm =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'fuzzy'; readonly value: string }
  | { readonly kind: 'range'; readonly min: string | undefined; readonly max: string | undefined }
  | { readonly kind: 'or'; readonly values: readonly string[] }
  | { readonly kind: 'and'; readonly values: readonly string[] };

/**
 * Parses `q=k1=v1,k2=~v2,k3=[min~max],k4={a b},k5=(a b)` into terms by key. Commas inside
 * brackets and braces belong to the value. Throws a 400 naming the bad part.
 */
export function parseQ(q: string | undefined): Map<string, QueryTerm> {
  const terms = new Map<string, QueryTerm>();
  if (q === undefined || q.trim() === '') return terms;
  for (const part of splitTopLevel(q)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw badRequest(`q: "${part}" is not key=value`);
    const key = part.slice(0, eq).trim();
    const raw = part.slice(eq + 1).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(key)) throw badRequest(`q: bad key "${key}"`);
    terms.set(key, parseTerm(key, raw));
  }
  return terms;
}

function splitTopLevel(q: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < q.length; i++) {
    const c = q[i];
    if (c === '[' || c === '{' || c === '(') depth++;
    else if (c === ']' || c === '}' || c === ')') depth = Math.max(0, depth - 1);
    else if (c === ',' && depth === 0) {
      parts.push(q.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(q.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

function parseTerm(key: string, raw: string): QueryTerm {
  if (raw.startsWith('~')) return { kind: 'fuzzy', value: raw.slice(1) };
  if (raw.startsWith('[')) {
    if (!raw.endsWith(']')) throw badRequest(`q: unterminated range for "${key}"`);
    const inner = raw.slice(1, -1);
    const tilde = inner.indexOf('~');
    if (tilde < 0) throw badRequest(`q: a range for "${key}" needs min~max`);
    const min = inner.slice(0, tilde).trim();
    const max = inner.slice(tilde + 1).trim();
    return { kind: 'range', min: min === '' ? undefined : unquote(min), max: max === '' ? undefined : unquote(max) };
  }
  if (raw.startsWith('{') || raw.startsWith('(')) {
    const close = raw.startsWith('{') ? '}' : ')';
    if (!raw.endsWith(close)) throw badRequest(`q: unterminated list for "${key}"`);
    const values = raw
      .slice(1, -1)
      .split(' ')
      .map((v) => v.trim())
      .filter((v) => v !== '');
    return { kind: close === '}' ? 'or' : 'and', values };
  }
  return { kind: 'exact', value: unquote(raw) };
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

/** A `q` term as a single exact value (for keys that take only one), or a 400. */
export function exactValue(terms: Map<string, QueryTerm>, key: string): string | undefined {
  const term = terms.get(key);
  if (term === undefined) return undefined;
  if (term.kind === 'exact' || term.kind === 'fuzzy') return term.value;
  throw badRequest(`q: "${key}" takes a single value`);
}

/**
 * Repository names with slashes come double URL-encoded in path parameters (`a%252Fb`); Fastify
 * decodes once, this decodes the rest. A name that is not valid percent-encoding is a 400.
 */
export function decodeRepositoryParam(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw badRequest(`malformed repository name "${value}"`);
  }
}
