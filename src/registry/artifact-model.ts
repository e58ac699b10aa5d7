/**
 * How Harbor's API shows the registry: the JSON shapes of repositories, artifacts, tags and search
 * results, and the pure functions that derive them from stored rows and manifest bytes (artifact
 * type, sizes, platforms, derived ids) or read Harbor's q= and sort= parameters.
 *
 * Manifests and tags have no numeric ids in our schema; the ids shown are derived from
 * (repository id, digest) and (repository id, tag name): stable across nodes and restarts, and
 * never used to look anything up (every route addresses artifacts by digest or tag, as Harbor's).
 */
import { createHash } from 'node:crypto';
import type { ProjectRef } from '../iam/access.ts';
import { badRequest, type QueryTerm } from '../platform/http/api.ts';
import { isIndexType } from '../platform/oci/media-types.ts';
import type { ArtifactFilter, ManifestRow, ProjectRow, RepositoryFilter, RepositoryRow, SortKey, TagRow, TextMatch } from './api-store.ts';

// ── JSON shapes (Harbor's swagger definitions) ─────────────────────────────

export interface RepositoryJson {
  id: number;
  project_id: number;
  name: string;
  description: string;
  artifact_count: number;
  pull_count: number;
  creation_time: string;
  update_time: string;
}

export interface TagJson {
  id: number;
  repository_id: number;
  artifact_id: number;
  name: string;
  push_time: string;
  pull_time: string;
  immutable: boolean;
}

export interface PlatformJson {
  architecture?: string;
  os?: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
}

export interface ReferenceJson {
  parent_id: number;
  child_id: number;
  child_digest: string;
  platform?: PlatformJson;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface AccessoryJson {
  id: number;
  artifact_id: number;
  subject_artifact_id: number;
  subject_artifact_digest: string;
  subject_artifact_repo: string;
  size: number;
  digest: string;
  type: string;
  icon: string;
  creation_time: string;
}

export interface ArtifactJson {
  id: number;
  type: string;
  media_type: string;
  manifest_media_type: string;
  artifact_type: string;
  project_id: number;
  repository_id: number;
  repository_name: string;
  digest: string;
  size: number;
  icon: string;
  push_time: string;
  pull_time: string;
  extra_attrs: Record<string, unknown>;
  annotations: Record<string, string>;
  references: ReferenceJson[];
  tags: TagJson[];
  addition_links: Record<string, { absolute: boolean; href: string }>;
  labels: unknown[];
  accessories: AccessoryJson[];
}

export interface SearchProjectJson {
  project_id: number;
  owner_id: number;
  name: string;
  registry_id: number;
  creation_time: string;
  update_time: string;
  deleted: boolean;
  repo_count: number;
  metadata: Record<string, string>;
}

export interface SearchRepositoryJson {
  project_id: number;
  project_name: string;
  project_public: boolean;
  repository_name: string;
  pull_count: number;
  artifact_count: number;
}

export interface SearchJson {
  project: SearchProjectJson[];
  repository: SearchRepositoryJson[];
}

export interface Paged<T> {
  readonly items: T[];
  readonly total: number;
}

export interface PageWindow {
  readonly offset: number;
  readonly pageSize: number;
}

// ── small pure helpers ─────────────────────────────────────────────────────

/** Harbor's zero time, shown for times that never happened (pull_time: pulls are not tracked). */
export const ZERO_TIME = '0001-01-01T00:00:00.000Z';
export const iso = (ms: number): string => new Date(ms).toISOString();

/** A stable positive id below 2^52 for something that has no id column. */
export function derivedId(kind: string, repositoryId: number, key: string): number {
  const hex = createHash('sha256').update(`${kind}\0${repositoryId}\0${key}`).digest('hex').slice(0, 13);
  return Number.parseInt(hex, 16) || 1;
}
export const artifactId = (repositoryId: number, digest: string): number => derivedId('artifact', repositoryId, digest);
export const tagId = (repositoryId: number, name: string): number => derivedId('tag', repositoryId, name);

/** Parses Harbor's `sort=a,-b`; unknown keys are a 400 naming those allowed. */
export function parseSort<K extends string>(text: string | undefined, allowed: readonly K[]): SortKey<K>[] {
  if (text === undefined || text.trim() === '') return [];
  return text.split(',').map((part) => {
    const trimmed = part.trim();
    const desc = trimmed.startsWith('-');
    const key = desc ? trimmed.slice(1) : trimmed;
    if (!(allowed as readonly string[]).includes(key)) throw badRequest(`sort: unknown key "${key}"; use one of ${allowed.join(', ')}`);
    return { key: key as K, desc };
  });
}

/** A q= term as an exact or contains match; ranges and lists are a 400 for keys that take one value. */
export function matchOf(terms: ReadonlyMap<string, QueryTerm>, key: string): TextMatch | undefined {
  const term = terms.get(key);
  if (term === undefined) return undefined;
  if (term.kind === 'exact' || term.kind === 'fuzzy') return { kind: term.kind, value: term.value };
  throw badRequest(`q: "${key}" takes a single value (k=v or k=~v)`);
}

export interface Descriptorish {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  platform?: unknown;
  annotations?: unknown;
  urls?: unknown;
}

/** What the artifact view needs from stored manifest bytes (validated at push, so parsed leniently). */
export interface ManifestContent {
  readonly isIndex: boolean;
  readonly configMediaType: string | undefined;
  readonly configDigest: string | undefined;
  /** Bytes the descriptors declare for config and layers (0 for an index: its children count instead). */
  readonly blobBytes: number;
  readonly children: readonly Descriptorish[];
  readonly artifactType: string | undefined;
  readonly annotations: Record<string, string>;
}

export function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
export const sizeOf = (d: unknown): number => {
  const size = asRecord(d).size;
  return typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? size : 0;
};
export const stringMap = (value: unknown): Record<string, string> =>
  Object.fromEntries(Object.entries(asRecord(value)).filter((e): e is [string, string] => typeof e[1] === 'string'));

export function readContent(row: Pick<ManifestRow, 'media_type' | 'content'>): ManifestContent {
  let body: Record<string, unknown> = {};
  try {
    body = asRecord(JSON.parse(Buffer.from(row.content.buffer, row.content.byteOffset, row.content.byteLength).toString('utf8')));
  } catch {
    // Stored manifests were validated when pushed; an unreadable one shows as an empty artifact.
  }
  const isIndex = isIndexType(row.media_type);
  const config = asRecord(body.config);
  const layers = asArray(body.layers);
  const children = asArray(body.manifests).map((d) => asRecord(d) as Descriptorish);
  return {
    isIndex,
    configMediaType: typeof config.mediaType === 'string' ? config.mediaType : undefined,
    configDigest: typeof config.digest === 'string' ? config.digest : undefined,
    blobBytes: isIndex ? 0 : sizeOf(config) + layers.reduce<number>((sum, l) => sum + sizeOf(l), 0),
    children,
    artifactType: typeof body.artifactType === 'string' ? body.artifactType : undefined,
    annotations: stringMap(body.annotations),
  };
}

const CONFIG_TYPES: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['IMAGE', ['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']],
  ['CHART', ['application/vnd.cncf.helm.config.v1+json']],
  ['CNAB', ['application/vnd.cnab.config.v1+json', 'application/vnd.cnab.manifest.v1']],
  ['WASM', ['application/vnd.wasm.config.v1+json', 'application/vnd.module.wasm.config.v1+json']],
  ['CNAI', ['application/vnd.cncf.model.config.v1+json']],
];
const SBOM_TYPES = new Set(['application/vnd.goharbor.harbor.sbom.v1']);

/** Harbor's artifact type (its processors' names), from the config media type or the index. */
export function artifactKind(content: ManifestContent): string {
  if (content.isIndex) return content.annotations['io.cnab.manifest.type'] !== undefined ? 'CNAB' : 'IMAGE';
  if (content.artifactType !== undefined && SBOM_TYPES.has(content.artifactType)) return 'SBOM';
  const config = content.configMediaType;
  if (config === undefined) return 'UNKNOWN';
  for (const [kind, types] of CONFIG_TYPES) if (types.includes(config)) return kind;
  return 'UNKNOWN';
}

/** Harbor's accessory type of a manifest with a subject. */
export function accessoryKind(row: Pick<ManifestRow, 'artifact_type'>, content: ManifestContent): string {
  const type = row.artifact_type ?? content.artifactType ?? content.configMediaType ?? '';
  if (type === 'application/vnd.cncf.notary.signature') return 'signature.notation';
  if (type === 'application/vnd.dev.cosign.artifact.sig.v1+json' || type.startsWith('application/vnd.dev.sigstore.bundle')) return 'signature.cosign';
  if (SBOM_TYPES.has(type)) return 'sbom.harbor';
  return 'subject.accessory';
}

export function platformOf(value: unknown): PlatformJson | undefined {
  const p = asRecord(value);
  const out: PlatformJson = {};
  if (typeof p.architecture === 'string') out.architecture = p.architecture;
  if (typeof p.os === 'string') out.os = p.os;
  if (typeof p['os.version'] === 'string') out['os.version'] = p['os.version'];
  const features = p['os.features'];
  if (Array.isArray(features)) out['os.features'] = features.filter((f): f is string => typeof f === 'string');
  if (typeof p.variant === 'string') out.variant = p.variant;
  return Object.keys(out).length > 0 ? out : undefined;
}

export function toRef(row: ProjectRow): ProjectRef {
  return { id: row.id, name: row.name, public: row.public === 1, createdAt: row.created_at };
}

export function parseMetadata(text: string): Record<string, string> {
  try {
    return stringMap(JSON.parse(text));
  } catch {
    return {};
  }
}

export function repositoryJson(row: RepositoryRow): RepositoryJson {
  return {
    id: row.id,
    project_id: row.project_id,
    name: row.name,
    description: row.description ?? '',
    artifact_count: row.artifact_count,
    pull_count: 0,
    creation_time: iso(row.created_at),
    update_time: iso(row.updated_at),
  };
}

export function tagJson(tag: TagRow, artifact: number): TagJson {
  return {
    id: tagId(tag.repository_id, tag.name),
    repository_id: tag.repository_id,
    artifact_id: artifact,
    name: tag.name,
    push_time: iso(tag.updated_at),
    pull_time: ZERO_TIME,
    immutable: false,
  };
}

/**
 * q=name=x / name=~x for repositories. Harbor matches against the full name (`library/nginx`); a
 * name given without its project inside a project listing is taken relative to the project.
 */
export function nameFilter(q: ReadonlyMap<string, QueryTerm>, projectName?: string): Pick<RepositoryFilter, 'name'> {
  const name = matchOf(q, 'name');
  if (!name) return {};
  if (name.kind === 'exact' && projectName !== undefined && !name.value.startsWith(`${projectName}/`)) return { name: { kind: 'exact', value: `${projectName}/${name.value}` } };
  return { name };
}

/** q=project_id=1 or project_id={1 2} for GET /repositories. */
export function projectIdTerm(q: ReadonlyMap<string, QueryTerm>): number[] | undefined {
  const term = q.get('project_id');
  if (term === undefined) return undefined;
  const values = term.kind === 'exact' ? [term.value] : term.kind === 'or' ? [...term.values] : undefined;
  if (values === undefined || values.some((v) => !/^\d+$/.test(v))) throw badRequest('q: project_id takes a number or {id1 id2 …}');
  return values.map(Number);
}

export function artifactFilter(q: ReadonlyMap<string, QueryTerm>): ArtifactFilter {
  const base = matchOf(q, 'base');
  if (base && !(base.kind === 'exact' && base.value === '*')) throw badRequest('q: base takes only "*" (every artifact, index children and accessories included)');
  const digest = matchOf(q, 'digest');
  if (digest && digest.kind !== 'exact') throw badRequest('q: digest takes an exact value');
  const tags = matchOf(q, 'tags');
  const mediaType = matchOf(q, 'media_type');
  const artifactType = matchOf(q, 'artifact_type');
  return {
    scope: base || digest ? 'all' : 'listed',
    ...(tags ? { tags } : {}),
    ...(digest ? { digest: digest.value } : {}),
    ...(mediaType ? { mediaType } : {}),
    ...(artifactType ? { artifactType } : {}),
  };
}
