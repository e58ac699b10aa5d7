import type { FastifyReply } from 'fastify';
import { type OciErrorCode, OciError } from '../oci/errors.ts';

interface ErrorEntry {
  readonly status: number;
  /** The code clients see; differs from ours only where the spec has no code of its own. */
  readonly wireCode?: string;
}

/** The one table from error code to HTTP status. */
export const ERROR_TABLE: Record<OciErrorCode, ErrorEntry> = {
  BLOB_UNKNOWN: { status: 404 },
  BLOB_UPLOAD_INVALID: { status: 400 },
  BLOB_UPLOAD_UNKNOWN: { status: 404 },
  DIGEST_INVALID: { status: 400 },
  MANIFEST_BLOB_UNKNOWN: { status: 400 },
  MANIFEST_INVALID: { status: 400 },
  MANIFEST_UNKNOWN: { status: 404 },
  NAME_INVALID: { status: 400 },
  NAME_UNKNOWN: { status: 404 },
  SIZE_INVALID: { status: 400 },
  TAG_INVALID: { status: 400 },
  UNAUTHORIZED: { status: 401 },
  DENIED: { status: 403 },
  UNSUPPORTED: { status: 405 },
  TOOMANYREQUESTS: { status: 429 },
  RANGE_INVALID: { status: 416 },
  RANGE_NOT_SATISFIABLE: { status: 416, wireCode: 'RANGE_INVALID' },
  MANIFEST_TOO_LARGE: { status: 413, wireCode: 'SIZE_INVALID' },
  PAGINATION_NUMBER_INVALID: { status: 400 },
  REQUEST_HEADER_TOO_LARGE: { status: 431 },
  METHOD_NOT_ALLOWED: { status: 405, wireCode: 'UNSUPPORTED' },
  NOT_FOUND: { status: 404 },
  INTERNAL_ERROR: { status: 500 },
  UNAVAILABLE: { status: 503 },
};

export function errorBody(code: OciErrorCode, message: string, detail?: unknown): string {
  const entry = ERROR_TABLE[code];
  return JSON.stringify({ errors: [{ code: entry.wireCode ?? code, message, ...(detail !== undefined ? { detail } : {}) }] });
}

export function statusOf(code: OciErrorCode): number {
  return ERROR_TABLE[code].status;
}

/** Sends an OciError in the spec's shape. HEAD responses get the status and headers only. */
export function sendOciError(reply: FastifyReply, err: OciError): FastifyReply {
  const body = errorBody(err.code, err.message, err.detail);
  reply.code(statusOf(err.code)).header('content-type', 'application/json; charset=utf-8');
  if (err.headers) reply.headers(err.headers);
  if (reply.request.method === 'HEAD') return reply.header('content-length', Buffer.byteLength(body)).send();
  return reply.send(body);
}

/**
 * Maps anything thrown by a handler to a response. Our own errors carry a code; errors from
 * Fastify itself (bad request framing, oversized bodies) are client mistakes with a 4xx status;
 * everything else is a 500 and gets logged with its stack.
 */
export function toOciError(err: unknown): OciError {
  if (err instanceof OciError) return err;
  const status = (err as { statusCode?: number } | null | undefined)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code: OciErrorCode = status === 404 ? 'NOT_FOUND' : status === 405 ? 'METHOD_NOT_ALLOWED' : status === 431 ? 'REQUEST_HEADER_TOO_LARGE' : 'BLOB_UPLOAD_INVALID';
    return new OciError(code, (err as Error).message);
  }
  return new OciError('INTERNAL_ERROR', 'internal error');
}
