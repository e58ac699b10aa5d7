import { createHash, type Hash } from 'node:crypto';
import { OciError } from './errors.ts';

/** Digest algorithms we verify. The spec registers sha256 and sha512. */
export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** The canonical `algorithm:hex` form. */
  readonly value: string;
}

// The spec grammar: algorithm ":" encoded, where the registered algorithms use lowercase hex.
const DIGEST_SHAPE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/** Parses a digest string or returns undefined when it is not one we can verify. */
export function tryParseDigest(input: string): ParsedDigest | undefined {
  const match = DIGEST_SHAPE.exec(input);
  if (!match) return undefined;
  const algorithm = match[1] as DigestAlgorithm;
  const hex = match[2] as string;
  const expected = Object.hasOwn(HEX_LENGTH, algorithm) ? HEX_LENGTH[algorithm] : undefined;
  if (expected === undefined || hex.length !== expected || !/^[a-f0-9]+$/.test(hex)) return undefined;
  return { algorithm, hex, value: input };
}

/** Parses a digest or throws DIGEST_INVALID, saying whether the shape, the algorithm or the encoding is wrong. */
export function parseDigest(input: string): ParsedDigest {
  const parsed = tryParseDigest(input);
  if (parsed) return parsed;
  const match = DIGEST_SHAPE.exec(input);
  let message: string;
  if (!match) {
    message = 'invalid digest: expected ALGORITHM:HEX, e.g. sha256:<64 lowercase hex digits>';
  } else if (!Object.hasOwn(HEX_LENGTH, match[1] as string)) {
    message = `unsupported digest algorithm "${match[1]}": use sha256 or sha512`;
  } else {
    const algorithm = match[1] as DigestAlgorithm;
    message = `invalid ${algorithm} digest: expected ${HEX_LENGTH[algorithm]} lowercase hex digits`;
  }
  throw new OciError('DIGEST_INVALID', message, { digest: input });
}

export function looksLikeDigest(reference: string): boolean {
  return reference.includes(':');
}

export function newHash(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}
