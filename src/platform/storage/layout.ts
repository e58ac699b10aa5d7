import path from 'node:path';
import type { ParsedDigest } from '../oci/digest.ts';

/**
 * The only place that builds storage keys. The layout, for every driver:
 *
 *   <root>/
 *   ├── blobs/
 *   │   └── <algorithm>/<first two hex digits>/<hex>   committed blobs: immutable, content-addressed,
 *   │                                                   stored once for the whole registry
 *   └── uploads/
 *       └── <upload id>                                 bytes received so far for one upload (a
 *                                                       session, or a one-request monolithic push),
 *                                                       renamed into blobs/ once its digest matched
 *
 * Repository membership, tags and manifests are not here: they live in the database.
 */
export function blobKey(digest: ParsedDigest): string {
  return path.posix.join('blobs', digest.algorithm, digest.hex.slice(0, 2), digest.hex);
}

export function uploadKey(uploadId: string): string {
  return path.posix.join('uploads', uploadId);
}

export const BLOBS_PREFIX = 'blobs';
export const UPLOADS_PREFIX = 'uploads';
