import type { Readable } from 'node:stream';
import { readLimited } from '../platform/lib/streams.ts';
import { isForeignKeyViolation } from '../platform/db/dialect.ts';
import { digestOf, looksLikeDigest, parseDigest } from '../platform/oci/digest.ts';
import { OciError } from '../platform/oci/errors.ts';
import { parseManifest } from '../platform/oci/manifest.ts';
import { assertRepositoryName, assertTag } from '../platform/oci/names.ts';
import { type RegistryStore, type StoredManifest, TagMovedError } from './store.ts';

export interface ManifestLimits {
  readonly maxBytes: number;
  readonly validateReferences: boolean;
}

/**
 * Checks other capabilities plug into the registry's write paths (tag immutability today; content
 * trust or policy later) without the registry importing them. A gate refuses by throwing, usually
 * a ManifestGateError. Lookups a gate may need are handed over lazily: a gate that does not care
 * about the repository (the common case) costs no query.
 */
export interface ManifestGates {
  /**
   * Before `tag` is created or moved to `toDigest` (a manifest PUT by tag, or a tag added through
   * the API). `currentDigest` reads where the tag points now (undefined: it does not exist yet).
   */
  beforeTagMove?(repository: string, tag: string, toDigest: string, currentDigest: () => Promise<string | undefined>): Promise<void>;
  /** Before the tag (pointing at `digest`) is deleted on its own. */
  beforeTagDelete?(repository: string, tag: string, digest: string): Promise<void>;
  /** Before the manifest is deleted together with every tag pointing at it. */
  beforeManifestDelete?(repository: string, digest: string): Promise<void>;
  /** Which of these tags the gate protects (Harbor's Tag.immutable in API listings). */
  protectedTags?(repository: string, tags: readonly string[]): Promise<ReadonlySet<string>>;
}

/**
 * A refusal by a gate: 403 DENIED on /v2 with the gate's message; the management API answers
 * it with Harbor's 412 PRECONDITION (src/registry/artifacts.ts).
 */
export class ManifestGateError extends OciError {
  constructor(message: string, detail?: unknown) {
    super('DENIED', message, detail);
    this.name = 'ManifestGateError';
  }
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
  readonly #gates: ManifestGates[] = [];

  constructor(deps: { store: RegistryStore; limits: ManifestLimits; gates?: readonly ManifestGates[] }) {
    this.#store = deps.store;
    this.#limits = deps.limits;
    if (deps.gates) this.#gates.push(...deps.gates);
  }

  /** Plugs in a gate (app.ts does, for each capability that guards tags and manifests). */
  addGates(gates: ManifestGates): void {
    this.#gates.push(gates);
  }

  /** Whether any gate is plugged in (callers skip preparing gate checks otherwise). */
  get gated(): boolean {
    return this.#gates.length > 0;
  }

  /** Runs the tag-move gates; the API's tag creation calls this before adding the tag. */
  async checkTagMove(repository: string, tag: string, toDigest: string, currentDigest: () => Promise<string | undefined>): Promise<void> {
    for (const gate of this.#gates) await gate.beforeTagMove?.(repository, tag, toDigest, currentDigest);
  }

  /** Runs the tag-delete gates; the API's tag deletion calls this before deleting. */
  async checkTagDelete(repository: string, tag: string, digest: string): Promise<void> {
    for (const gate of this.#gates) await gate.beforeTagDelete?.(repository, tag, digest);
  }

  /** Runs the manifest-delete gates; the API's artifact deletion calls this for every manifest it would delete. */
  async checkManifestDelete(repository: string, digest: string): Promise<void> {
    for (const gate of this.#gates) await gate.beforeManifestDelete?.(repository, digest);
  }

  /** The tags among `tags` that some gate protects (empty when no gate protects any). */
  async protectedTags(repository: string, tags: readonly string[]): Promise<ReadonlySet<string>> {
    if (tags.length === 0 || this.#gates.length === 0) return new Set();
    const out = new Set<string>();
    for (const gate of this.#gates) {
      if (!gate.protectedTags) continue;
      for (const tag of await gate.protectedTags(repository, tags)) out.add(tag);
    }
    return out;
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
    const manifest = {
      digest,
      mediaType: parsed.mediaType,
      artifactType: parsed.artifactType,
      subjectDigest: parsed.subject?.digest ?? null,
      annotations: parsed.annotations,
      content: bytes,
      blobDigests: parsed.blobs.map((d) => d.digest),
      childDigests: parsed.manifests.map((d) => d.digest),
    };
    for (let attempt = 1; ; attempt++) {
      const repositoryId = attempt === 1 ? existingId : await this.#store.findRepositoryId(repository);
      // What the gates decided on: the tag's digest when they read it. The store moves the tag only
      // if it still points there (compare-and-set), so two concurrent pushes of different content
      // to a new immutable tag cannot both pass; the loser runs the gates again on what won.
      let observed: { digest: string | undefined } | undefined;
      if (!byDigest && this.#gates.length > 0) {
        let current: Promise<string | undefined> | undefined;
        const currentDigest = () =>
          (current ??= (repositoryId === undefined ? Promise.resolve(undefined) : this.#store.resolveTag(repositoryId, reference)).then((d) => {
            observed = { digest: d };
            return d;
          }));
        for (const gate of this.#gates) await gate.beforeTagMove?.(repository, reference, digest, currentDigest);
      }
      const id = repositoryId ?? (await this.#store.ensureRepository(repository));
      try {
        await this.#store.putManifest(id, manifest, byDigest ? null : reference, observed);
        return { digest, subject: parsed.subject?.digest ?? null, size: bytes.byteLength };
      } catch (err) {
        // The repository was deleted under the push (its manifests' foreign key failed): the
        // client's push is answered as one to a repository that is not there.
        if (isForeignKeyViolation(err) && (await this.#store.findRepositoryId(repository)) !== id) {
          throw new OciError('NAME_UNKNOWN', `repository ${repository} was deleted while the manifest was being pushed`);
        }
        if (!(err instanceof TagMovedError) || attempt >= 5) throw err;
      }
    }
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
    if (this.#gates.length > 0) {
      if (byDigest) {
        await this.checkManifestDelete(repository, reference);
      } else {
        // The gates see a tag that exists: deleting a missing tag stays a 404.
        const digest = await this.#store.resolveTag(repositoryId, reference);
        if (digest === undefined) throw new OciError('MANIFEST_UNKNOWN', 'manifest unknown', { reference });
        await this.checkTagDelete(repository, reference, digest);
      }
    }
    const deleted = byDigest ? await this.#store.deleteManifest(repositoryId, reference) : await this.#store.deleteTag(repositoryId, reference);
    if (!deleted) throw new OciError('MANIFEST_UNKNOWN', 'manifest unknown', { reference });
  }
}
