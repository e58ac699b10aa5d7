import { OciError } from './errors.ts';
import { tryParseDigest } from './digest.ts';
import { isIndexType, isNonDistributableLayer, MediaType, SUPPORTED_MANIFEST_TYPES } from './media-types.ts';

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Record<string, string>;
  readonly platform?: unknown;
}

/** What the registry needs to know about a manifest after validation. */
export interface ParsedManifest {
  readonly mediaType: string;
  /** The artifact type used by the referrers API: artifactType, else the config's media type. */
  readonly artifactType: string | null;
  readonly subject: Descriptor | null;
  readonly annotations: Record<string, string> | null;
  /** Blobs that must exist in the repository (config and distributable layers). */
  readonly blobs: readonly Descriptor[];
  /** Child manifests that must exist in the repository (index entries). */
  readonly manifests: readonly Descriptor[];
}

function invalid(message: string, detail?: unknown): OciError {
  return new OciError('MANIFEST_INVALID', message, detail);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readAnnotations(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    throw invalid(`${where}.annotations must be a map of strings`);
  }
  return value as Record<string, string>;
}

function readDescriptor(value: unknown, where: string): Descriptor {
  if (!isRecord(value)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size, artifactType } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0) throw invalid(`${where}.mediaType is required`);
  if (typeof digest !== 'string' || !tryParseDigest(digest)) throw invalid(`${where}.digest is not a valid digest`, { digest });
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${where}.size must be a non-negative integer`);
  if (artifactType !== undefined && typeof artifactType !== 'string') throw invalid(`${where}.artifactType must be a string`);
  const annotations = readAnnotations(value.annotations, where);
  return {
    mediaType,
    digest,
    size,
    ...(artifactType !== undefined ? { artifactType } : {}),
    ...(annotations ? { annotations } : {}),
    ...(value.platform !== undefined ? { platform: value.platform } : {}),
  };
}

function readDescriptorList(value: unknown, where: string): Descriptor[] {
  if (!Array.isArray(value)) throw invalid(`${where} must be an array`);
  return value.map((item, i) => readDescriptor(item, `${where}[${i}]`));
}

/**
 * Decides the media type of a pushed manifest from its Content-Type and its own mediaType field.
 * The two must agree when both are present (the spec requires it); either one alone is enough.
 */
function resolveMediaType(contentType: string | undefined, body: Record<string, unknown>): string {
  const declared = typeof body.mediaType === 'string' ? body.mediaType : undefined;
  if (body.mediaType !== undefined && declared === undefined) throw invalid('mediaType must be a string');
  const header = contentType?.split(';')[0]?.trim().toLowerCase() || undefined;
  const headerIsGeneric = header === undefined || header === 'application/json' || header === 'application/octet-stream';
  if (declared && !headerIsGeneric && header !== declared) {
    throw invalid(`Content-Type "${header}" does not match the manifest's mediaType "${declared}"`);
  }
  const mediaType = declared ?? (headerIsGeneric ? undefined : header) ?? (Array.isArray(body.manifests) ? MediaType.ociIndex : MediaType.ociManifest);
  if (mediaType === MediaType.dockerSchema1 || mediaType === MediaType.dockerSchema1Signed) {
    throw new OciError('MANIFEST_INVALID', 'Docker schema 1 manifests are not supported; push schema 2 or OCI');
  }
  if (!SUPPORTED_MANIFEST_TYPES.has(mediaType)) throw invalid(`unsupported manifest media type "${mediaType}"`);
  return mediaType;
}

/** Parses and validates manifest bytes. Throws MANIFEST_INVALID with a precise reason. */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined): ParsedManifest {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw invalid('manifest is not valid JSON');
  }
  if (!isRecord(body)) throw invalid('manifest must be a JSON object');
  if (body.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  const mediaType = resolveMediaType(contentType, body);
  const annotations = readAnnotations(body.annotations, 'manifest') ?? null;
  const subject = body.subject === undefined ? null : readDescriptor(body.subject, 'subject');
  if (body.artifactType !== undefined && typeof body.artifactType !== 'string') throw invalid('artifactType must be a string');
  const ownArtifactType = typeof body.artifactType === 'string' ? body.artifactType : null;

  if (isIndexType(mediaType)) {
    if (body.layers !== undefined || body.config !== undefined) throw invalid('an index has no config or layers');
    const manifests = readDescriptorList(body.manifests, 'manifests');
    return { mediaType, artifactType: ownArtifactType, subject, annotations, blobs: [], manifests };
  }

  if (body.manifests !== undefined) throw invalid('an image manifest has no manifests list');
  const config = readDescriptor(body.config, 'config');
  const layers = body.layers === undefined && mediaType === MediaType.ociManifest ? [] : readDescriptorList(body.layers, 'layers');
  if (mediaType === MediaType.dockerManifest && layers.length === 0) throw invalid('a Docker schema 2 manifest needs at least one layer');
  const blobs = [config, ...layers.filter((l) => !isNonDistributableLayer(l.mediaType))];
  return {
    mediaType,
    artifactType: ownArtifactType ?? config.mediaType,
    subject,
    annotations,
    blobs,
    manifests: [],
  };
}
