/**
 * Matches paths under /v2/. Repository names contain slashes, so no trie router can express the
 * routes; they are matched from the right, where the last segments are unambiguous
 * (a tag, digest or upload id never contains a slash).
 */
export type V2Route =
  | { readonly kind: 'base' }
  | { readonly kind: 'catalog' }
  | { readonly kind: 'tags'; readonly name: string }
  | { readonly kind: 'manifest'; readonly name: string; readonly reference: string }
  | { readonly kind: 'blob'; readonly name: string; readonly digest: string }
  | { readonly kind: 'uploads'; readonly name: string }
  | { readonly kind: 'upload'; readonly name: string; readonly id: string }
  | { readonly kind: 'referrers'; readonly name: string; readonly digest: string };

export const ALLOWED_METHODS: Record<V2Route['kind'], readonly string[]> = {
  base: ['GET', 'HEAD'],
  catalog: ['GET'],
  tags: ['GET'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  blob: ['GET', 'HEAD', 'DELETE'],
  uploads: ['POST'],
  upload: ['GET', 'PATCH', 'PUT', 'DELETE'],
  referrers: ['GET'],
};

/** `path` is what follows "/v2/", without the query string. Undefined means no such route. */
export function matchV2Path(path: string): V2Route | undefined {
  let decoded: string[];
  try {
    decoded = path.split('/').map((segment) => decodeURIComponent(segment));
  } catch {
    return undefined;
  }
  if (decoded.length === 1 && decoded[0] === '') return { kind: 'base' };
  if (decoded.length === 1 && decoded[0] === '_catalog') return { kind: 'catalog' };
  const n = decoded.length;
  const at = (i: number) => decoded[n - i] as string;
  const nameUpTo = (i: number) => decoded.slice(0, n - i).join('/');
  // …/blobs/uploads/ or …/blobs/uploads (start an upload)
  if (n >= 3 && at(2) === 'blobs' && at(1) === 'uploads') return { kind: 'uploads', name: nameUpTo(2) };
  if (n >= 4 && at(3) === 'blobs' && at(2) === 'uploads' && at(1) === '') return { kind: 'uploads', name: nameUpTo(3) };
  if (n >= 4 && at(3) === 'blobs' && at(2) === 'uploads') return { kind: 'upload', name: nameUpTo(3), id: at(1) };
  if (n >= 3 && at(2) === 'tags' && at(1) === 'list') return { kind: 'tags', name: nameUpTo(2) };
  if (n >= 3 && at(2) === 'manifests' && at(1) !== '') return { kind: 'manifest', name: nameUpTo(2), reference: at(1) };
  if (n >= 3 && at(2) === 'blobs' && at(1) !== '') return { kind: 'blob', name: nameUpTo(2), digest: at(1) };
  if (n >= 3 && at(2) === 'referrers' && at(1) !== '') return { kind: 'referrers', name: nameUpTo(2), digest: at(1) };
  return undefined;
}
