import { OciError } from './errors.ts';

/**
 * Repository and tag grammar from the distribution spec:
 *   name: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 *   tag:  [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
 * Names are limited so that `<host>/<name>` stays within 255 characters, as clients expect.
 */
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

export const MAX_NAME_LENGTH = 255;

export function isValidRepositoryName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function assertRepositoryName(name: string): void {
  if (!isValidRepositoryName(name)) {
    throw new OciError('NAME_INVALID', 'invalid repository name', { name });
  }
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export function assertTag(tag: string): void {
  if (!isValidTag(tag)) throw new OciError('TAG_INVALID', 'invalid tag', { tag });
}
