import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OciError } from '../../src/platform/oci/errors.ts';
import { assertRepositoryName, assertTag, isValidRepositoryName, isValidTag, MAX_NAME_LENGTH } from '../../src/platform/oci/names.ts';

function throwsCode(fn: () => void, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof OciError && err.code === code);
}

describe('repository names (distribution-spec grammar)', () => {
  const valid = [
    'a',
    'a/b/c',
    'a.b-c_d',
    'a__b',
    'a--b',
    'a---b',
    '0',
    'library/ubuntu',
    'my-org/team.x/app_1',
    'x'.repeat(MAX_NAME_LENGTH),
    `${'a/'.repeat(127)}a`, // 255 characters of one-letter components
  ];
  for (const name of valid) {
    it(`accepts ${JSON.stringify(name.length > 40 ? `${name.slice(0, 20)}…(${name.length})` : name)}`, () => {
      assert.equal(isValidRepositoryName(name), true);
      assert.doesNotThrow(() => assertRepositoryName(name));
    });
  }

  const invalid: Array<[string, string]> = [
    ['..', 'dot-dot'],
    ['a/../b', 'a dot-dot component'],
    ['a/./b', 'a dot component'],
    ['A', 'uppercase'],
    ['a/B', 'uppercase component'],
    ['a//b', 'an empty component'],
    ['/a', 'a leading slash'],
    ['a/', 'a trailing slash'],
    ['-a', 'a leading separator'],
    ['_a', 'a leading underscore'],
    ['.a', 'a leading dot'],
    ['a.', 'a trailing dot'],
    ['a-', 'a trailing dash'],
    ['a___b', 'three underscores'],
    ['a..b', 'two dots'],
    ['a._b', 'mixed separators'],
    ['a b', 'a space'],
    ['a:b', 'a colon'],
    ['a@b', 'an at sign'],
    ['é', 'non-ASCII'],
    ['', 'the empty string'],
    ['x'.repeat(MAX_NAME_LENGTH + 1), '256 characters'],
  ];
  for (const [name, why] of invalid) {
    it(`rejects ${why}`, () => {
      assert.equal(isValidRepositoryName(name), false);
      throwsCode(() => assertRepositoryName(name), 'NAME_INVALID');
    });
  }

  it('limits names to 255 characters', () => {
    assert.equal(MAX_NAME_LENGTH, 255);
  });
});

describe('tags', () => {
  const valid = ['latest', 'v1.0_rc-1', '_x', 'X', '0', 'a'.repeat(128), `_${'.'.repeat(127)}`, 'V1.2.3-ALPHA'];
  for (const tag of valid) {
    it(`accepts ${JSON.stringify(tag.length > 40 ? `${tag.slice(0, 10)}…(${tag.length})` : tag)}`, () => {
      assert.equal(isValidTag(tag), true);
      assert.doesNotThrow(() => assertTag(tag));
    });
  }

  const invalid: Array<[string, string]> = [
    ['-x', 'a leading dash'],
    ['.x', 'a leading dot'],
    ['a'.repeat(129), '129 characters'],
    ['a/b', 'a slash'],
    ['', 'the empty string'],
    ['a:b', 'a colon'],
    ['a+b', 'a plus'],
    ['a b', 'a space'],
    ['ä', 'non-ASCII'],
    ['latest\n', 'a trailing newline'],
  ];
  for (const [tag, why] of invalid) {
    it(`rejects ${why}`, () => {
      assert.equal(isValidTag(tag), false);
      throwsCode(() => assertTag(tag), 'TAG_INVALID');
    });
  }
});
