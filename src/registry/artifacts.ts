/**
 * Harbor's view of the registry: repositories, artifacts (manifests) and tags as the management
 * API shows them, and /search. Reads come from RegistryApiStore; every write to manifests and tags
 * goes through RegistryStore or ManifestService, where quota accounting lives.
 *
 * Harbor's conventions kept here:
 * - a repository is named `<project>/<rest>`; the API addresses it by project and the rest;
 * - an artifact is a manifest; its `size` is the manifest plus what it references (config and
 *   layers from its descriptors; an index adds its children's sizes);
 * - listings hide index children that carry no tag and accessories (manifests with a subject),
 *   as Harbor does; `q=base=*` shows everything; accessories appear under their subject;
 * - deleting an artifact deletes its tags, its accessories, and the children of an index that no
 *   other index references and no tag names; an artifact an index still references cannot be
 *   deleted on its own (412).
 * - the registry's gates (tag immutability …) guard the API as they guard /v2: deleting a
 *   protected tag, or an artifact that carries one, and tagging over one answer 412 PRECONDITION,
 *   as Harbor does on its API (/v2 answers the same refusal with 403 DENIED); tags show
 *   `immutable: true` when a gate protects them.
 */
import type { AccessControl, ProjectRef } from '../iam/access.ts';
import type { Action, ProjectResource, Subject } from '../iam/rbac.ts';
import { ApiError, badRequest, conflict, notFound, type QueryTerm } from '../platform/http/api.ts';
import { readLimited } from '../platform/lib/streams.ts';
import { looksLikeDigest, tryParseDigest } from '../platform/oci/digest.ts';
import { isValidRepositoryName, isValidTag } from '../platform/oci/names.ts';
import type { BlobStore } from '../platform/storage/blob-store.ts';
import {
  accessoryKind,
  type ArtifactJson,
  artifactFilter,
  artifactId,
  artifactKind,
  asRecord,
  type Descriptorish,
  derivedId,
  iso,
  type ManifestContent,
  matchOf,
  nameFilter,
  type Paged,
  type PageWindow,
  parseMetadata,
  parseSort,
  platformOf,
  projectIdTerm,
  type RepositoryJson,
  readContent,
  repositoryJson,
  type SearchJson,
  sizeOf,
  stringMap,
  type TagJson,
  tagJson,
  toRef,
  ZERO_TIME,
} from './artifact-model.ts';
import type { ArtifactSortKey, ManifestRow, ProjectRow, RegistryApiStore, RepositoryFilter, RepositoryRow, RepositorySortKey, TagRow, TagSortKey, TextMatch } from './api-store.ts';
import { ManifestGateError, type ManifestService } from './manifests.ts';
import type { RegistryStore } from './store.ts';

// ── the service ────────────────────────────────────────────────────────────

/** A gate's refusal becomes Harbor's 412 on the API (on /v2 it stays 403 DENIED). */
async function gated<T>(operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (err) {
    if (err instanceof ManifestGateError) throw new ApiError('PRECONDITION', err.message);
    throw err;
  }
}

export interface ArtifactServiceDeps {
  readonly api: RegistryApiStore;
  readonly store: RegistryStore;
  readonly manifests: ManifestService;
  readonly access: AccessControl;
  /** When given, GET of one image artifact reads its config blob for extra_attrs (architecture, os, created …). */
  readonly blobs?: BlobStore;
  readonly now?: () => number;
}

export interface ArtifactListOptions {
  readonly q: ReadonlyMap<string, QueryTerm>;
  readonly sort: string | undefined;
  readonly page: PageWindow;
  readonly withTag: boolean;
  readonly withAccessory: boolean;
}

const REPOSITORY_SORTS: readonly RepositorySortKey[] = ['name', 'creation_time', 'update_time', 'pull_count', 'artifact_count'];
const ARTIFACT_SORTS: readonly ArtifactSortKey[] = ['push_time', 'pull_time', 'digest', 'media_type'];
const TAG_SORTS: readonly TagSortKey[] = ['name', 'push_time', 'pull_time'];
const CONFIG_MAX_BYTES = 1 << 20;
/** Search answers at most this many projects and this many repositories (Harbor's search does not page). */
export const SEARCH_LIMIT = 500;

export class ArtifactService {
  readonly #api: RegistryApiStore;
  readonly #store: RegistryStore;
  readonly #manifests: ManifestService;
  readonly #access: AccessControl;
  readonly #blobs: BlobStore | undefined;
  readonly #now: () => number;

  constructor(deps: ArtifactServiceDeps) {
    this.#api = deps.api;
    this.#store = deps.store;
    this.#manifests = deps.manifests;
    this.#access = deps.access;
    this.#blobs = deps.blobs;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * The project id for a project name in a path. Project names may be all digits, which the
   * project directory would read as an id; resolving such names here keeps them names.
   */
  async projectKey(name: string): Promise<string | number> {
    if (!/^\d+$/.test(name)) return name;
    const id = await this.#api.projectIdByName(name);
    if (id === undefined) throw notFound(`project ${name} not found`);
    return id;
  }

  // ── visibility ───────────────────────────────────────────────────────────

  /** Projects where `subject` may do `action` on `resource`; undefined means every project (a system admin). */
  async #visibleProjects(subject: Subject, resource: ProjectResource, action: Action, name?: TextMatch): Promise<ProjectRow[] | undefined> {
    if (subject.kind === 'user' && subject.sysadmin) return name ? this.#api.projectCandidates({ all: true }, name) : undefined;
    const who =
      subject.kind === 'user'
        ? { userId: subject.id }
        : subject.kind === 'robot'
          ? (() => {
              const names = subject.access.filter((a) => a.kind === 'project').map((a) => a.namespace);
              return names.includes('*') ? { all: true } : { names };
            })()
          : {};
    const candidates = await this.#api.projectCandidates(who, name);
    const kept: ProjectRow[] = [];
    for (const row of candidates) {
      if (await this.#access.can(subject, toRef(row), resource, action)) kept.push(row);
    }
    return kept;
  }

  // ── repositories ─────────────────────────────────────────────────────────

  /** GET /repositories: every repository the caller may list. */
  async listAllRepositories(subject: Subject, q: ReadonlyMap<string, QueryTerm>, sort: string | undefined, page: PageWindow): Promise<Paged<RepositoryJson>> {
    const visible = await this.#visibleProjects(subject, 'repository', 'list');
    let projectIds = visible?.map((p) => p.id);
    const wanted = projectIdTerm(q);
    if (wanted !== undefined) projectIds = (projectIds ?? wanted).filter((id) => wanted.includes(id));
    return this.#listRepositories({ ...(projectIds !== undefined ? { projectIds } : {}), ...nameFilter(q) }, sort, page);
  }

  /** GET /projects/{p}/repositories. */
  async listRepositories(project: ProjectRef, q: ReadonlyMap<string, QueryTerm>, sort: string | undefined, page: PageWindow): Promise<Paged<RepositoryJson>> {
    return this.#listRepositories({ projectIds: [project.id], ...nameFilter(q, project.name) }, sort, page);
  }

  async #listRepositories(filter: RepositoryFilter, sortText: string | undefined, page: PageWindow): Promise<Paged<RepositoryJson>> {
    const sort = parseSort(sortText, REPOSITORY_SORTS);
    const [total, rows] = await Promise.all([
      this.#api.countRepositories(filter),
      this.#api.listRepositories(filter, sort.length > 0 ? sort : [{ key: 'creation_time', desc: true }], page.offset, page.pageSize),
    ]);
    return { total, items: rows.map(repositoryJson) };
  }

  async getRepository(project: ProjectRef, path: string): Promise<RepositoryJson> {
    return repositoryJson(await this.#repository(project, path));
  }

  async updateRepository(project: ProjectRef, path: string, description: string): Promise<void> {
    const repo = await this.#repository(project, path);
    if (!(await this.#api.updateRepositoryDescription(repo.id, description, this.#now()))) throw notFound(`repository ${repo.name} not found`);
  }

  /**
   * Deletes the repository with every artifact, tag, blob link and upload session, in one
   * transaction of RegistryStore, which gives the project's quota back what nothing else uses.
   */
  async deleteRepository(project: ProjectRef, path: string): Promise<void> {
    const repo = await this.#repository(project, path);
    if (this.#manifests.gated) {
      // Deleting the repository deletes every tag: refused while a gate protects any of them.
      const names: string[] = [];
      for (let page = await this.#store.listTags(repo.id, undefined, 1000); page.length > 0; page = await this.#store.listTags(repo.id, page.at(-1), 1000)) names.push(...page);
      const protectedTags = [...(await this.#manifests.protectedTags(repo.name, names))];
      if (protectedTags.length > 0) {
        const shown = protectedTags.slice(0, 5).join(', ') + (protectedTags.length > 5 ? ` and ${protectedTags.length - 5} more` : '');
        throw new ApiError('PRECONDITION', `repository ${repo.name} has immutable tags (${shown}); it cannot be deleted while they are`);
      }
    }
    if (!(await this.#store.deleteRepository(repo.id))) throw notFound(`repository ${repo.name} not found`);
  }

  async #repository(project: ProjectRef, path: string): Promise<RepositoryRow> {
    const repo = await this.#findRepository(project, path);
    if (!repo) throw notFound(`repository ${project.name}/${path} not found`);
    return repo;
  }

  async #findRepository(project: ProjectRef, path: string): Promise<RepositoryRow | undefined> {
    const name = `${project.name}/${path}`;
    if (!isValidRepositoryName(name)) throw badRequest(`invalid repository name "${path}"`);
    return this.#api.findRepository(name);
  }

  // ── artifacts ────────────────────────────────────────────────────────────

  /** As in Harbor, a repository that does not exist (yet) simply has no artifacts. */
  async listArtifacts(project: ProjectRef, path: string, options: ArtifactListOptions): Promise<Paged<ArtifactJson>> {
    const filter = artifactFilter(options.q);
    const sort = parseSort(options.sort, ARTIFACT_SORTS);
    const repo = await this.#findRepository(project, path);
    if (!repo) return { total: 0, items: [] };
    const [total, rows] = await Promise.all([
      this.#api.countArtifacts(repo.id, filter),
      this.#api.listArtifacts(repo.id, filter, sort.length > 0 ? sort : [{ key: 'push_time', desc: true }], options.page.offset, options.page.pageSize),
    ]);
    return { total, items: await this.#assemble(repo, rows, { withTag: options.withTag, withAccessory: options.withAccessory, extraAttrs: false }) };
  }

  async getArtifact(project: ProjectRef, path: string, reference: string, options: { withTag: boolean; withAccessory: boolean }): Promise<ArtifactJson> {
    const repo = await this.#repository(project, path);
    const row = await this.#resolve(repo, reference);
    const [artifact] = await this.#assemble(repo, [row], { ...options, extraAttrs: true });
    return artifact as ArtifactJson;
  }

  async deleteArtifact(project: ProjectRef, path: string, reference: string): Promise<void> {
    const repo = await this.#repository(project, path);
    const row = await this.#resolve(repo, reference);
    const parents = await this.#api.parentDigests(repo.id, row.digest);
    if (parents.length > 0) {
      throw new ApiError('PRECONDITION', `artifact ${repo.name}@${row.digest} is referenced by the index ${parents[0]}; delete the index first`);
    }
    if (this.#manifests.gated) {
      for (const digest of await this.#deletionPlan(repo.id, row.digest)) await gated(this.#manifests.checkManifestDelete(repo.name, digest));
    }
    // Gone meanwhile (another deletion, garbage collection): Harbor's 404, as if it had not been found.
    if (!(await this.#deleteWithDependents(repo.id, row.digest))) throw notFound(`artifact ${repo.name}@${row.digest} not found`);
  }

  /** Every manifest #deleteWithDependents would delete, found the same way, without deleting. */
  async #deletionPlan(repositoryId: number, digest: string, planned = new Set<string>()): Promise<Set<string>> {
    planned.add(digest);
    const [children, accessories] = await Promise.all([this.#api.childDigests(repositoryId, [digest]), this.#api.accessoriesOf(repositoryId, [digest])]);
    for (const accessory of accessories) if (!planned.has(accessory.digest)) await this.#deletionPlan(repositoryId, accessory.digest, planned);
    for (const child of children.get(digest) ?? []) {
      if (planned.has(child)) continue;
      if ((await this.#api.parentDigests(repositoryId, child)).some((parent) => !planned.has(parent))) continue;
      if ((await this.#api.tagsOf(repositoryId, [child])).length > 0) continue;
      await this.#deletionPlan(repositoryId, child, planned);
    }
    return planned;
  }

  /**
   * Deletes a manifest, its accessories, and those of its children no other index references and
   * no tag names. False when the manifest itself was already gone.
   */
  async #deleteWithDependents(repositoryId: number, digest: string): Promise<boolean> {
    const [children, accessories] = await Promise.all([this.#api.childDigests(repositoryId, [digest]), this.#api.accessoriesOf(repositoryId, [digest])]);
    if (!(await this.#store.deleteManifest(repositoryId, digest))) return false;
    for (const accessory of accessories) await this.#deleteWithDependents(repositoryId, accessory.digest);
    for (const child of children.get(digest) ?? []) {
      if ((await this.#api.parentDigests(repositoryId, child)).length > 0) continue;
      if ((await this.#api.tagsOf(repositoryId, [child])).length > 0) continue;
      await this.#deleteWithDependents(repositoryId, child);
    }
    return true;
  }

  async #resolve(repo: RepositoryRow, reference: string): Promise<ManifestRow> {
    let digest: string;
    if (looksLikeDigest(reference)) {
      const parsed = tryParseDigest(reference);
      if (!parsed) throw badRequest(`invalid digest "${reference}": expected sha256:<64 hex digits> or sha512:<128 hex digits>`);
      digest = parsed.value;
    } else {
      if (!isValidTag(reference)) throw badRequest(`invalid tag "${reference}"`);
      const tag = await this.#api.findTag(repo.id, reference);
      if (!tag) throw notFound(`artifact ${repo.name}:${reference} not found`);
      digest = tag.digest;
    }
    const row = await this.#api.findArtifact(repo.id, digest);
    if (!row) throw notFound(`artifact ${repo.name}@${digest} not found`);
    return row;
  }

  async #assemble(repo: RepositoryRow, rows: readonly ManifestRow[], options: { withTag: boolean; withAccessory: boolean; extraAttrs: boolean }): Promise<ArtifactJson[]> {
    if (rows.length === 0) return [];
    const contents = new Map(rows.map((row) => [row.digest, readContent(row)]));
    const childDigests = [...contents.values()].flatMap((c) => c.children.map((d) => d.digest).filter((d): d is string => typeof d === 'string'));
    const digests = rows.map((r) => r.digest);
    const [children, tags, accessories] = await Promise.all([
      this.#api.artifactsByDigest(repo.id, childDigests),
      options.withTag ? this.#api.tagsOf(repo.id, digests) : Promise.resolve([] as TagRow[]),
      options.withAccessory ? this.#api.accessoriesOf(repo.id, digests) : Promise.resolve([] as ManifestRow[]),
    ]);
    const immutable = await this.#manifests.protectedTags(
      repo.name,
      tags.map((t) => t.name),
    );
    const childSize = new Map(children.map((c) => [c.digest, c.size + readContent(c).blobBytes]));
    const sizeOfRow = (row: ManifestRow, content: ManifestContent): number =>
      row.size +
      content.blobBytes +
      content.children.reduce<number>((sum, d) => sum + (typeof d.digest === 'string' && childSize.has(d.digest) ? (childSize.get(d.digest) as number) : sizeOf(d)), 0);

    const out: ArtifactJson[] = [];
    for (const row of rows) {
      const content = contents.get(row.digest) as ManifestContent;
      const id = artifactId(repo.id, row.digest);
      const kind = artifactKind(content);
      out.push({
        id,
        type: kind,
        media_type: content.isIndex ? row.media_type : (content.configMediaType ?? row.media_type),
        manifest_media_type: row.media_type,
        artifact_type: content.artifactType ?? content.configMediaType ?? (content.isIndex ? '' : row.media_type),
        project_id: repo.project_id,
        repository_id: repo.id,
        repository_name: repo.name,
        digest: row.digest,
        size: sizeOfRow(row, content),
        icon: '',
        push_time: iso(row.created_at),
        pull_time: row.pulled_at === null ? ZERO_TIME : iso(row.pulled_at),
        extra_attrs: options.extraAttrs && kind === 'IMAGE' && !content.isIndex ? await this.#extraAttrs(content) : {},
        annotations: content.annotations,
        references: content.children
          .filter((d): d is Descriptorish & { digest: string } => typeof d.digest === 'string')
          .map((d) => {
            const platform = platformOf(d.platform);
            const annotations = d.annotations === undefined ? undefined : stringMap(d.annotations);
            const urls = Array.isArray(d.urls) ? d.urls.filter((u): u is string => typeof u === 'string') : undefined;
            return {
              parent_id: id,
              child_id: artifactId(repo.id, d.digest),
              child_digest: d.digest,
              ...(platform ? { platform } : {}),
              ...(annotations ? { annotations } : {}),
              ...(urls ? { urls } : {}),
            };
          }),
        tags: tags.filter((t) => t.digest === row.digest).map((t) => ({ ...tagJson(t, id), immutable: immutable.has(t.name) })),
        addition_links: {},
        labels: [],
        accessories: accessories
          .filter((a) => a.subject_digest === row.digest)
          .map((a) => {
            const accessoryContent = readContent(a);
            return {
              id: derivedId('accessory', repo.id, a.digest),
              artifact_id: artifactId(repo.id, a.digest),
              subject_artifact_id: id,
              subject_artifact_digest: row.digest,
              subject_artifact_repo: repo.name,
              size: a.size + accessoryContent.blobBytes,
              digest: a.digest,
              type: accessoryKind(a, accessoryContent),
              icon: '',
              creation_time: iso(a.created_at),
            };
          }),
      });
    }
    return out;
  }

  /** Harbor's image extra_attrs from the config blob; {} when it cannot be read. */
  async #extraAttrs(content: ManifestContent): Promise<Record<string, unknown>> {
    const digest = content.configDigest === undefined ? undefined : tryParseDigest(content.configDigest);
    if (!this.#blobs || !digest) return {};
    try {
      const stream = await this.#blobs.read(digest);
      const bytes = await readLimited(stream, CONFIG_MAX_BYTES, () => new Error('config too large'));
      const config = asRecord(JSON.parse(bytes.toString('utf8')));
      const attrs: Record<string, unknown> = {};
      for (const key of ['architecture', 'os', 'author', 'created', 'variant']) if (config[key] !== undefined) attrs[key] = config[key];
      if (config.config !== undefined) attrs.config = config.config;
      return attrs;
    } catch {
      return {};
    }
  }

  // ── tags ─────────────────────────────────────────────────────────────────

  async listTags(project: ProjectRef, path: string, reference: string, q: ReadonlyMap<string, QueryTerm>, sortText: string | undefined, page: PageWindow): Promise<Paged<TagJson>> {
    const repo = await this.#repository(project, path);
    const row = await this.#resolve(repo, reference);
    const name = matchOf(q, 'name');
    const sort = parseSort(sortText, TAG_SORTS);
    const [total, tags] = await Promise.all([
      this.#api.countTags(repo.id, row.digest, name),
      this.#api.listTags(repo.id, row.digest, name, sort.length > 0 ? sort : [{ key: 'push_time', desc: true }], page.offset, page.pageSize),
    ]);
    const id = artifactId(repo.id, row.digest);
    const immutable = await this.#manifests.protectedTags(repo.name, tags.map((t) => t.name));
    return { total, items: tags.map((t) => ({ ...tagJson(t, id), immutable: immutable.has(t.name) })) };
  }

  /** Adds a tag to the artifact; 409 when the repository already has a tag of that name. */
  async createTag(project: ProjectRef, path: string, reference: string, name: string): Promise<void> {
    if (!isValidTag(name)) throw badRequest(`invalid tag name "${name}": use up to 128 of [A-Za-z0-9_.-], not starting with . or -`);
    const repo = await this.#repository(project, path);
    const row = await this.#resolve(repo, reference);
    const existing = await this.#api.findTag(repo.id, name);
    if (existing) throw conflict(`tag ${name} already exists in ${repo.name}${existing.digest === row.digest ? '' : ' on another artifact'}`);
    // The manifest is stored and was validated when pushed; a new tag adds no bytes to account for.
    // The store adds the tag only while the manifest row is there (garbage collection may delete an
    // untagged one meanwhile) and only if no tag of that name appeared since the gates looked.
    if (this.#manifests.gated) {
      await gated(this.#manifests.checkTagMove(repo.name, name, row.digest, async () => (await this.#api.findTag(repo.id, name))?.digest));
    }
    const outcome = await this.#store.addTag(repo.id, row.digest, name);
    if (outcome === 'gone') throw notFound(`artifact ${repo.name}@${row.digest} not found`);
    if (outcome === 'exists') throw conflict(`tag ${name} already exists in ${repo.name}`);
  }

  async deleteTag(project: ProjectRef, path: string, reference: string, name: string): Promise<void> {
    const repo = await this.#repository(project, path);
    const row = await this.#resolve(repo, reference);
    const tag = isValidTag(name) ? await this.#api.findTag(repo.id, name) : undefined;
    if (!tag || tag.digest !== row.digest) throw notFound(`tag ${name} of artifact ${repo.name}@${row.digest} not found`);
    await gated(this.#manifests.checkTagDelete(repo.name, name, row.digest));
    if (!(await this.#store.deleteTag(repo.id, name))) throw notFound(`tag ${name} of artifact ${repo.name}@${row.digest} not found`);
  }

  // ── search ───────────────────────────────────────────────────────────────

  /** Projects and repositories whose names contain `term`, among those the caller may see. */
  async search(subject: Subject, term: string): Promise<SearchJson> {
    const match: TextMatch = { kind: 'fuzzy', value: term };
    const projects = ((await this.#visibleProjects(subject, 'project', 'read', match)) ?? []).slice(0, SEARCH_LIMIT);
    const repoProjects = await this.#visibleProjects(subject, 'repository', 'list');
    const filter: RepositoryFilter = { ...(repoProjects ? { projectIds: repoProjects.map((p) => p.id) } : {}), name: match };
    const [counts, repos] = await Promise.all([
      this.#api.repositoryCounts(projects.map((p) => p.id)),
      this.#api.listRepositories(filter, [{ key: 'name', desc: false }], 0, SEARCH_LIMIT),
    ]);
    return {
      project: projects.map((p) => ({
        project_id: p.id,
        owner_id: p.owner_id ?? 0,
        name: p.name,
        registry_id: 0,
        creation_time: iso(p.created_at),
        update_time: iso(p.updated_at),
        deleted: false,
        repo_count: counts.get(p.id) ?? 0,
        metadata: { ...parseMetadata(p.metadata), public: p.public === 1 ? 'true' : 'false' },
      })),
      repository: repos.map((r) => ({
        project_id: r.project_id,
        project_name: r.project_name,
        project_public: r.project_public === 1,
        repository_name: r.name,
        pull_count: 0,
        artifact_count: r.artifact_count,
      })),
    };
  }
}
