/**
 * Typed errors with a stable code. Services throw these; the one table in
 * platform/http/errors.ts turns a code into a status and a response body.
 * Codes are the OCI distribution-spec codes plus distribution's RANGE_INVALID
 * and a few of our own for conditions the spec leaves to implementations.
 */
export const OCI_ERROR_CODES = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'TAG_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
  'RANGE_INVALID',
  'RANGE_NOT_SATISFIABLE',
  'MANIFEST_TOO_LARGE',
  'PAGINATION_NUMBER_INVALID',
  'REQUEST_HEADER_TOO_LARGE',
  'METHOD_NOT_ALLOWED',
  'NOT_FOUND',
  'INTERNAL_ERROR',
  'UNAVAILABLE',
] as const;

export type OciErrorCode = (typeof OCI_ERROR_CODES)[number];

export class OciError extends Error {
  readonly code: OciErrorCode;
  readonly detail: unknown;
  /** Extra response headers the error needs (e.g. Range on a 416 upload status). */
  readonly headers: Record<string, string> | undefined;

  constructor(code: OciErrorCode, message: string, detail?: unknown, headers?: Record<string, string>) {
    super(message);
    this.name = 'OciError';
    this.code = code;
    this.detail = detail;
    this.headers = headers;
  }
}
