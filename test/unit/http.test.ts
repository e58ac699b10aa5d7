import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ERROR_TABLE, errorBody, statusOf, toOciError } from '../../src/platform/http/errors.ts';
import { originForm } from '../../src/platform/http/server.ts';
import { OCI_ERROR_CODES, OciError } from '../../src/platform/oci/errors.ts';

describe('originForm', () => {
  const cases: Array<[string, string]> = [
    ['/v2/', '/v2/'],
    ['/v2/a/manifests/latest?x=1', '/v2/a/manifests/latest?x=1'],
    ['/', '/'],
    ['http://registry.example.com/v2/', '/v2/'],
    ['http://registry.example.com:5000/v2/a/tags/list?n=1', '/v2/a/tags/list?n=1'],
    ['https://user@[::1]:443/v2/_catalog', '/v2/_catalog'],
    ['HTTP://HOST/v2/', '/v2/'],
    ['http://host', '/'],
    ['http://host?n=1', '/?n=1'],
    ['http://host/', '/'],
    ['*', '*'],
    ['v2/relative', 'v2/relative'],
  ];
  for (const [input, expected] of cases) {
    it(`${input} → ${expected}`, () => {
      assert.equal(originForm(input), expected);
    });
  }
});

describe('the error table', () => {
  it('has exactly one entry per OciErrorCode', () => {
    assert.deepEqual(Object.keys(ERROR_TABLE).sort(), [...OCI_ERROR_CODES].sort());
  });

  for (const code of OCI_ERROR_CODES) {
    const serverSide = code === 'INTERNAL_ERROR' || code === 'UNAVAILABLE';
    it(`${code} → ${serverSide ? '5xx' : '4xx'}`, () => {
      const status = statusOf(code);
      assert.ok(Number.isInteger(status));
      if (serverSide) assert.ok(status >= 500 && status <= 599, `${code} is ${status}`);
      else assert.ok(status >= 400 && status <= 499, `${code} is ${status}`);
    });
  }

  it('uses the spec statuses for the common codes', () => {
    const expected: Array<[(typeof OCI_ERROR_CODES)[number], number]> = [
      ['BLOB_UNKNOWN', 404],
      ['MANIFEST_UNKNOWN', 404],
      ['NAME_UNKNOWN', 404],
      ['BLOB_UPLOAD_UNKNOWN', 404],
      ['DIGEST_INVALID', 400],
      ['MANIFEST_INVALID', 400],
      ['NAME_INVALID', 400],
      ['TAG_INVALID', 400],
      ['UNAUTHORIZED', 401],
      ['DENIED', 403],
      ['TOOMANYREQUESTS', 429],
      ['RANGE_NOT_SATISFIABLE', 416],
      ['MANIFEST_TOO_LARGE', 413],
      ['REQUEST_HEADER_TOO_LARGE', 431],
      ['INTERNAL_ERROR', 500],
      ['UNAVAILABLE', 503],
    ];
    for (const [code, status] of expected) assert.equal(statusOf(code), status, code);
  });

  it('renders the spec body, with the wire code where ours has no spec equivalent', () => {
    assert.deepEqual(JSON.parse(errorBody('BLOB_UNKNOWN', 'blob unknown', { digest: 'x' })), { errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown', detail: { digest: 'x' } }] });
    assert.deepEqual(JSON.parse(errorBody('MANIFEST_TOO_LARGE', 'too big')), { errors: [{ code: 'SIZE_INVALID', message: 'too big' }] });
    assert.equal(JSON.parse(errorBody('METHOD_NOT_ALLOWED', 'no')).errors[0].code, 'UNSUPPORTED');
    assert.equal(JSON.parse(errorBody('RANGE_NOT_SATISFIABLE', 'no')).errors[0].code, 'RANGE_INVALID');
  });

  it('every wire code is a code clients know', () => {
    for (const entry of Object.values(ERROR_TABLE)) {
      if (entry.wireCode) assert.ok((OCI_ERROR_CODES as readonly string[]).includes(entry.wireCode), entry.wireCode);
    }
  });
});

describe('toOciError', () => {
  it('passes our own errors through', () => {
    const err = new OciError('NAME_UNKNOWN', 'x');
    assert.equal(toOciError(err), err);
  });

  it('maps framework 4xx errors to client codes', () => {
    assert.equal(toOciError({ statusCode: 404, message: 'x' }).code, 'NOT_FOUND');
    assert.equal(toOciError({ statusCode: 405, message: 'x' }).code, 'METHOD_NOT_ALLOWED');
    assert.equal(toOciError({ statusCode: 431, message: 'x' }).code, 'REQUEST_HEADER_TOO_LARGE');
    assert.equal(toOciError(Object.assign(new Error('bad body'), { statusCode: 400 })).code, 'BLOB_UPLOAD_INVALID');
    assert.equal(toOciError(Object.assign(new Error('bad body'), { statusCode: 400 })).message, 'bad body');
  });

  it('turns anything else into INTERNAL_ERROR without leaking its message', () => {
    for (const err of [new Error('secret path /etc/x'), { statusCode: 502 }, 'string', undefined, null]) {
      const mapped = toOciError(err);
      assert.equal(mapped.code, 'INTERNAL_ERROR');
      assert.equal(mapped.message, 'internal error');
    }
  });
});
