import type { Readable } from 'node:stream';
import { readLimited } from '../platform/lib/streams.ts';
import { digestOf, looksLikeDigest, parseDigest } from '../platform/oci/digest.ts';
import { OciError } from '../platform/oci/errors.ts';
import { parseManifest } from '../platform/oci/manifest.ts';
import { assertRepositoryName, assertTag } from '../platform/oci/names.ts';
import type { RegistryStore, StoredManifest } from './store.ts';

export interface ManifestLimits {
  readonly maxBytes: number;
  readonly validateReferences: boolean;
}

export interface PutManifestResult {
  readonly digest: string;
  readonly subject: string | null;
  /** Bytes of the stored manifest. */
  readonly size: number;
}

/** Manifests and tags of a repository. */
export class ManifestService {
  readonly #store: RegistryStore;
  readonly #limits: ManifestLimits;

  constructor(deps: { store: RegistryStore; limits: ManifestLimits }) {
    this.#store = deps.store;
    this.#limits = deps.limits;
  }

  /** PUT by tag or digest: validates, checks references, stores, tags. */
  async put(repository: string, reference: string, contentType: string | undefined, body: Readable, contentLength: number | undefined): Promise<PutManifestResult> {
    assertRepositoryName(repository);
    const byDigest = looksLikeDigest(reference);
    const expected = byDigest ? parseDigest(reference) : undefined;
    if (!byDigest) assertTag(reference);
    const tooLarge = () => new OciError('MANIFEST_TOO_LARGE', `manifest exceeds the limit of ${this.#limits.maxBytes} bytes`);
    if (contentLength !== undefined && contentLength > this.#limits.maxBytes) {
      body.resume();
      throw tooLarge();
    }
    const bytes = await readLimited(body, this.#limits.maxBytes, tooLarge);
    const digest = digestOf(bytes, expected?.algorithm ?? 'sha256');
    if (expected && expected.value !== digest) {
      throw new OciError('DIGEST_INVALID', 'manifest content does not match the digest in the URL', { expected: expected.value, actual: digest });
    }
    const parsed = parseManifest(bytes, contentType);
    // The repository is created only once the manifest is accepted: a refused push leaves nothing behind.
    const existingId = await this.#store.findRepositoryId(repository);
    if (this.#limits.validateReferences) {
      const blobDigests = parsed.blobs.map((d) => d.digest);
      const missingBlobs = existingId === undefined ? [...new Set(blobDigests)] : await this.#store.missingBlobs(existingId, blobDigests);
      if (missingBlobs.length > 0) throw new OciError('MANIFEST_BLOB_UNKNOWN', 'manifest references blobs the repository does not have', { digests: missingBlobs });
      const childDigests = parsed.manifests.map((d) => d.digest);
      const missingManifests = existingId === undefined ? [...new Set(childDigests)] : await this.#store.missingManifests(existingId, childDigests);
      if (missingManifests.length > 0) throw new OciError('MANIFEST_BLOB_UNKNOWN', 'index references manifests the repository does not have', { digests: missingManifests });
    }
    const repositoryId = existingId ?? (await this.#store.ensureRepository(repository));
    await this.#store.putManifest(
      repositoryId,
      {
        digest,
        mediaType: parsed.mediaType,
        artifactType: parsed.artifactType,
        subjectDigest: parsed.subject?.digest ?? null,
        annotations: parsed.annotations,
        content: bytes,
        blobDigests: parsed.blobs.map((d) => d.digest),
        childDigests: parsed.manifests.map((d) => d.digest),
      },
      byDigest ? null : reference,
    );
    return { digest, subject: parsed.subject?.digest ?? null, size: bytes.byteLength };
  }

  /** GET/HEAD by tag or digest. What is stored is served, whatever the Accept header lists. */
  async get(repository: string, reference: string): Promise<StoredManifest> {
    assertRepositoryName(repository);
    const byDigest = looksLikeDigest(reference);
    if (byDigest) parseDigest(reference);
    else assertTag(reference);
    const found = await this.#store.findManifest(repository, byDigest ? { digest: reference } : { tag: reference });
    if (!found.repositoryExists) throw new OciError('NAME_UNKNOWN', 'repository name not known to registry', { name: repository });
    const manifest = found.manifest;
    if (!manifest) throw new OciError('MANIFEST_UNKNOWN', 'manifest unknown', { reference });
    return manifest;
  }

  /** DELETE by digest removes the manifest and its tags; by tag removes the tag only. */
  async delete(repository: string, reference: string): Promise<void> {
    assertRepositoryName(repository);
    const byDigest = looksLikeDigest(reference);
    if (byDigest) parseDigest(reference);
    else assertTag(reference);
    const repositoryId = await this.#store.findRepositoryId(repository);
    if (repositoryId === undefined) throw new OciError('NAME_UNKNOWN', 'repository name not known to registry', { name: repository });
    const deleted = byDigest ? await this.#store.deleteManifest(repositoryId, reference) : await this.#store.deleteTag(repositoryId, reference);
    if (!deleted) throw new OciError('MANIFEST_UNKNOWN', 'manifest unknown', { reference });
  }
}
