import path from 'node:path';
import type { ParsedDigest } from '../oci/digest.ts';

/**
 * The only place that builds storage keys. The layout, for every driver:
 *
 *   <root>/
 *   ├── blobs/
 *   │   └── <algorithm>/<first two hex digits>/<hex>   committed blobs: immutable, content-addressed,
 *   │                                                   stored once for the whole registry
 *   ├── uploads/
 *   │   └── <upload id>                                 bytes received so far for one upload (a
 *   │                                                   session, or a one-request monolithic push),
 *   │                                                   renamed into blobs/ once its digest matched
 *   └── trash/
 *       └── <bin>/<algorithm>/<hex>                     blobs garbage collection took away inside a
 *                                                       transaction not yet known to be committed
 *                                                       (one bin per run); emptied after the commit,
 *                                                       put back or dropped by the next run after a crash
 *
 * Repository membership, tags and manifests are not here: they live in the database.
 */
export function blobKey(digest: ParsedDigest): string {
  return path.posix.join('blobs', digest.algorithm, digest.hex.slice(0, 2), digest.hex);
}

export function uploadKey(uploadId: string): string {
  return path.posix.join('uploads', uploadId);
}

/** A trash bin's name: letters, digits, dot, dash and underscore. */
export function assertTrashBin(bin: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(bin)) throw new Error(`invalid trash bin name ${JSON.stringify(bin)}`);
}

export function trashKey(bin: string, digest: ParsedDigest): string {
  assertTrashBin(bin);
  return path.posix.join(TRASH_PREFIX, bin, digest.algorithm, digest.hex);
}

export function trashBinKey(bin: string): string {
  assertTrashBin(bin);
  return path.posix.join(TRASH_PREFIX, bin);
}

export const BLOBS_PREFIX = 'blobs';
export const TRASH_PREFIX = 'trash';
export const UPLOADS_PREFIX = 'uploads';
