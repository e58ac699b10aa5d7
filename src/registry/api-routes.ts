/**
 * Harbor's repository, artifact and tag API over the registry's tables, and /search
 * (/api/v2.0, Harbor's swagger groups `repository`, `artifact` and `search`).
 *
 * Every project-scoped route authorises through AccessControl.requireProject with Harbor's
 * (resource, action) for the operation; GET /repositories and /search show only what the
 * authoriser lets the caller see, project by project. Repository names come double URL-encoded
 * after the project (`library/a/b` → /projects/library/repositories/a%252Fb).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { type Static, Type } from 'typebox';
import type { AccessControl, ProjectRef } from '../iam/access.ts';
import type { Action, ProjectResource } from '../iam/rbac.ts';
import { decodeRepositoryParam, pageParams, parseQ, setPageHeaders } from '../platform/http/api.ts';
import type { Database } from '../platform/db/schema.ts';
import type { BlobStore } from '../platform/storage/blob-store.ts';
import { RegistryApiStore } from './api-store.ts';
import { ArtifactService } from './artifacts.ts';
import type { ManifestService } from './manifests.ts';
import type { RegistryStore } from './store.ts';

export interface RegistryApiDeps {
  readonly db: Kysely<Database>;
  readonly store: RegistryStore;
  readonly manifests: ManifestService;
  readonly access: AccessControl;
  /** Optional: lets GET of one image artifact fill extra_attrs from its config blob. */
  readonly blobs?: BlobStore;
}

// ── schemas ────────────────────────────────────────────────────────────────

const Time = Type.String({ format: 'date-time' });
const StringMap = Type.Record(Type.String(), Type.String());

const Repository = Type.Object({
  id: Type.Integer(),
  project_id: Type.Integer(),
  name: Type.String({ description: 'Full name, project included, e.g. library/nginx.' }),
  description: Type.String(),
  artifact_count: Type.Integer(),
  pull_count: Type.Integer(),
  creation_time: Time,
  update_time: Time,
});

const Tag = Type.Object({
  id: Type.Integer(),
  repository_id: Type.Integer(),
  artifact_id: Type.Integer(),
  name: Type.String(),
  push_time: Time,
  pull_time: Time,
  immutable: Type.Boolean(),
});

const Platform = Type.Object({
  architecture: Type.Optional(Type.String()),
  os: Type.Optional(Type.String()),
  'os.version': Type.Optional(Type.String()),
  'os.features': Type.Optional(Type.Array(Type.String())),
  variant: Type.Optional(Type.String()),
});

const Reference = Type.Object({
  parent_id: Type.Integer(),
  child_id: Type.Integer(),
  child_digest: Type.String(),
  platform: Type.Optional(Platform),
  annotations: Type.Optional(StringMap),
  urls: Type.Optional(Type.Array(Type.String())),
});

const Accessory = Type.Object({
  id: Type.Integer(),
  artifact_id: Type.Integer(),
  subject_artifact_id: Type.Integer(),
  subject_artifact_digest: Type.String(),
  subject_artifact_repo: Type.String(),
  size: Type.Integer(),
  digest: Type.String(),
  type: Type.String(),
  icon: Type.String(),
  creation_time: Time,
});

const Artifact = Type.Object({
  id: Type.Integer({ description: 'Derived from repository and digest: stable, but not an address (use the digest).' }),
  type: Type.String({ description: 'IMAGE, CHART, CNAB, WASM, SBOM, CNAI or UNKNOWN.' }),
  media_type: Type.String({ description: 'The config media type (the manifest media type for an index).' }),
  manifest_media_type: Type.String(),
  artifact_type: Type.String(),
  project_id: Type.Integer(),
  repository_id: Type.Integer(),
  repository_name: Type.String(),
  digest: Type.String(),
  size: Type.Integer({ description: 'Manifest plus config and layers; an index adds its children.' }),
  icon: Type.String(),
  push_time: Time,
  pull_time: Time,
  extra_attrs: Type.Record(Type.String(), Type.Unknown()),
  annotations: StringMap,
  references: Type.Array(Reference),
  tags: Type.Array(Tag),
  addition_links: Type.Record(Type.String(), Type.Object({ absolute: Type.Boolean(), href: Type.String() })),
  labels: Type.Array(Type.Unknown()),
  accessories: Type.Array(Accessory),
});

const SearchResult = Type.Object({
  project: Type.Array(
    Type.Object({
      project_id: Type.Integer(),
      owner_id: Type.Integer(),
      name: Type.String(),
      registry_id: Type.Integer(),
      creation_time: Time,
      update_time: Time,
      deleted: Type.Boolean(),
      repo_count: Type.Integer(),
      metadata: StringMap,
    }),
  ),
  repository: Type.Array(
    Type.Object({
      project_id: Type.Integer(),
      project_name: Type.String(),
      project_public: Type.Boolean(),
      repository_name: Type.String(),
      pull_count: Type.Integer(),
      artifact_count: Type.Integer(),
    }),
  ),
});

const ListQuery = {
  q: Type.Optional(Type.String({ description: "Harbor's query: k=v exact, k=~v contains, k={a b} any of." })),
  sort: Type.Optional(Type.String({ description: 'Comma-separated keys; a leading - sorts descending.' })),
  page: Type.Optional(Type.Integer({ minimum: 1, default: 1 })),
  page_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10 })),
};

const ProjectParams = Type.Object({ project_name: Type.String() });
const RepositoryParams = Type.Object({ project_name: Type.String(), repository_name: Type.String({ description: 'The name after the project, double URL-encoded (a%252Fb).' }) });
const ArtifactParams = Type.Object({
  project_name: Type.String(),
  repository_name: Type.String(),
  reference: Type.String({ description: 'A digest or a tag.' }),
});
const TagParams = Type.Object({ project_name: Type.String(), repository_name: Type.String(), reference: Type.String(), tag_name: Type.String() });

/** Harbor clients send whole Repository / Tag objects: the known fields are accepted, only the writable one is used. */
const RepositoryUpdate = Type.Object(
  {
    description: Type.String({ maxLength: 65535 }),
    id: Type.Optional(Type.Integer()),
    project_id: Type.Optional(Type.Integer()),
    name: Type.Optional(Type.String()),
    artifact_count: Type.Optional(Type.Integer()),
    pull_count: Type.Optional(Type.Integer()),
    creation_time: Type.Optional(Type.String()),
    update_time: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const TagCreate = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    id: Type.Optional(Type.Integer()),
    repository_id: Type.Optional(Type.Integer()),
    artifact_id: Type.Optional(Type.Integer()),
    push_time: Type.Optional(Type.String()),
    pull_time: Type.Optional(Type.String()),
    immutable: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const WithFlags = {
  with_tag: Type.Optional(Type.Boolean({ default: true })),
  with_accessory: Type.Optional(Type.Boolean({ default: false })),
  with_label: Type.Optional(Type.Boolean()),
  with_scan_overview: Type.Optional(Type.Boolean()),
  with_sbom_overview: Type.Optional(Type.Boolean()),
  with_signature: Type.Optional(Type.Boolean()),
  with_immutable_status: Type.Optional(Type.Boolean()),
};

type ListQueryT = { q?: string; sort?: string; page?: number; page_size?: number };
type FlagsT = { with_tag?: boolean; with_accessory?: boolean };

const Empty = Type.Null({ description: 'No body.' });

export async function registryApiRoutes(api: FastifyInstance, deps: RegistryApiDeps): Promise<void> {
  const artifacts = new ArtifactService({
    api: new RegistryApiStore(deps.db),
    store: deps.store,
    manifests: deps.manifests,
    access: deps.access,
    ...(deps.blobs ? { blobs: deps.blobs } : {}),
  });

  /** The project of the path, if the caller may do `action` on `resource` in it (404/401/403 otherwise). */
  const project = async (request: FastifyRequest, name: string, resource: ProjectResource, action: Action): Promise<ProjectRef> =>
    deps.access.requireProject(request, await artifacts.projectKey(name), resource, action);
  const repositoryPath = (params: { repository_name: string }) => decodeRepositoryParam(params.repository_name);
  const repositoryUrl = (p: ProjectRef, path: string) => `/api/v2.0/projects/${encodeURIComponent(p.name)}/repositories/${encodeURIComponent(encodeURIComponent(path))}`;

  // ── repositories ─────────────────────────────────────────────────────────

  api.get<{ Querystring: ListQueryT }>(
    '/repositories',
    {
      schema: {
        tags: ['repository'],
        operationId: 'listAllRepositories',
        summary: 'Every repository the caller may see (all of them for a system admin).',
        querystring: Type.Object(ListQuery),
        response: { 200: Type.Array(Repository) },
      },
    },
    async (request, reply) => {
      const page = pageParams(request.query);
      const result = await artifacts.listAllRepositories(request.subject, parseQ(request.query.q), request.query.sort, page);
      setPageHeaders(request, reply, page, result.total);
      return result.items;
    },
  );

  api.get<{ Params: Static<typeof ProjectParams>; Querystring: ListQueryT }>(
    '/projects/:project_name/repositories',
    {
      schema: {
        tags: ['repository'],
        operationId: 'listRepositories',
        summary: "The project's repositories.",
        params: ProjectParams,
        querystring: Type.Object(ListQuery),
        response: { 200: Type.Array(Repository) },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name, 'repository', 'list');
      const page = pageParams(request.query);
      const result = await artifacts.listRepositories(p, parseQ(request.query.q), request.query.sort, page);
      setPageHeaders(request, reply, page, result.total);
      return result.items;
    },
  );

  api.get<{ Params: Static<typeof RepositoryParams> }>(
    '/projects/:project_name/repositories/:repository_name',
    { schema: { tags: ['repository'], operationId: 'getRepository', summary: 'One repository.', params: RepositoryParams, response: { 200: Repository } } },
    async (request) => {
      // Harbor asks repository:list here, so that anonymous visitors of public projects may read it.
      const p = await project(request, request.params.project_name, 'repository', 'list');
      return artifacts.getRepository(p, repositoryPath(request.params));
    },
  );

  api.put<{ Params: Static<typeof RepositoryParams>; Body: Static<typeof RepositoryUpdate> }>(
    '/projects/:project_name/repositories/:repository_name',
    {
      schema: {
        tags: ['repository'],
        operationId: 'updateRepository',
        summary: "Sets the repository's description.",
        params: RepositoryParams,
        body: RepositoryUpdate,
        response: { 200: Empty },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name, 'repository', 'update');
      await artifacts.updateRepository(p, repositoryPath(request.params), request.body.description);
      return reply.code(200).send();
    },
  );

  api.delete<{ Params: Static<typeof RepositoryParams> }>(
    '/projects/:project_name/repositories/:repository_name',
    {
      schema: {
        tags: ['repository'],
        operationId: 'deleteRepository',
        summary: 'Deletes the repository with all its artifacts and tags.',
        params: RepositoryParams,
        response: { 200: Empty },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name, 'repository', 'delete');
      await artifacts.deleteRepository(p, repositoryPath(request.params));
      return reply.code(200).send();
    },
  );

  // ── artifacts ────────────────────────────────────────────────────────────

  api.get<{ Params: Static<typeof RepositoryParams>; Querystring: ListQueryT & FlagsT }>(
    '/projects/:project_name/repositories/:repository_name/artifacts',
    {
      schema: {
        tags: ['artifact'],
        operationId: 'listArtifacts',
        summary: 'Artifacts of the repository: tagged ones and those no index references (q=base=* for all), newest first.',
        params: RepositoryParams,
        querystring: Type.Object({ ...ListQuery, ...WithFlags }),
        response: { 200: Type.Array(Artifact) },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name, 'artifact', 'list');
      const page = pageParams(request.query);
      const result = await artifacts.listArtifacts(p, repositoryPath(request.params), {
        q: parseQ(request.query.q),
        sort: request.query.sort,
        page,
        withTag: request.query.with_tag ?? true,
        withAccessory: request.query.with_accessory ?? false,
      });
      setPageHeaders(request, reply, page, result.total);
      return result.items;
    },
  );

  api.get<{ Params: Static<typeof ArtifactParams>; Querystring: FlagsT }>(
    '/projects/:project_name/repositories/:repository_name/artifacts/:reference',
    {
      schema: {
        tags: ['artifact'],
        operationId: 'getArtifact',
        summary: 'One artifact, by digest or tag.',
        params: ArtifactParams,
        querystring: Type.Object(WithFlags),
        response: { 200: Artifact },
      },
    },
    async (request) => {
      const p = await project(request, request.params.project_name, 'artifact', 'read');
      return artifacts.getArtifact(p, repositoryPath(request.params), request.params.reference, {
        withTag: request.query.with_tag ?? true,
        withAccessory: request.query.with_accessory ?? false,
      });
    },
  );

  api.delete<{ Params: Static<typeof ArtifactParams> }>(
    '/projects/:project_name/repositories/:repository_name/artifacts/:reference',
    {
      schema: {
        tags: ['artifact'],
        operationId: 'deleteArtifact',
        summary: "Deletes the artifact, its tags and accessories, and an index's children nothing else references.",
        params: ArtifactParams,
        response: { 200: Empty },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name, 'artifact', 'delete');
      await artifacts.deleteArtifact(p, repositoryPath(request.params), request.params.reference);
      return reply.code(200).send();
    },
  );

  // ── tags ─────────────────────────────────────────────────────────────────

  api.get<{ Params: Static<typeof ArtifactParams>; Querystring: ListQueryT & { with_immutable_status?: boolean } }>(
    '/projects/:project_name/repositories/:repository_name/artifacts/:reference/tags',
    {
      schema: {
        tags: ['artifact'],
        operationId: 'listTags',
        summary: "The artifact's tags (q=name=~x filters), newest first.",
        params: ArtifactParams,
        querystring: Type.Object({ ...ListQuery, with_immutable_status: Type.Optional(Type.Boolean()) }),
        response: { 200: Type.Array(Tag) },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name, 'tag', 'list');
      const page = pageParams(request.query);
      const result = await artifacts.listTags(p, repositoryPath(request.params), request.params.reference, parseQ(request.query.q), request.query.sort, page);
      setPageHeaders(request, reply, page, result.total);
      return result.items;
    },
  );

  api.post<{ Params: Static<typeof ArtifactParams>; Body: Static<typeof TagCreate> }>(
    '/projects/:project_name/repositories/:repository_name/artifacts/:reference/tags',
    {
      schema: {
        tags: ['artifact'],
        operationId: 'createTag',
        summary: 'Adds a tag to the artifact; 409 when the repository already has a tag of that name.',
        params: ArtifactParams,
        body: TagCreate,
        response: { 201: Empty },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name, 'tag', 'create');
      const path = repositoryPath(request.params);
      await artifacts.createTag(p, path, request.params.reference, request.body.name);
      return reply
        .code(201)
        .header('location', `${repositoryUrl(p, path)}/artifacts/${encodeURIComponent(request.params.reference)}/tags/${encodeURIComponent(request.body.name)}`)
        .send();
    },
  );

  api.delete<{ Params: Static<typeof TagParams> }>(
    '/projects/:project_name/repositories/:repository_name/artifacts/:reference/tags/:tag_name',
    {
      schema: {
        tags: ['artifact'],
        operationId: 'deleteTag',
        summary: 'Removes one tag of the artifact (the artifact stays).',
        params: TagParams,
        response: { 200: Empty },
      },
    },
    async (request, reply) => {
      const p = await project(request, request.params.project_name, 'tag', 'delete');
      await artifacts.deleteTag(p, repositoryPath(request.params), request.params.reference, request.params.tag_name);
      return reply.code(200).send();
    },
  );

  // ── search ───────────────────────────────────────────────────────────────

  api.get<{ Querystring: { q: string } }>(
    '/search',
    {
      schema: {
        tags: ['search'],
        operationId: 'search',
        summary: 'Projects and repositories whose names contain q, among those the caller may see.',
        querystring: Type.Object({ q: Type.String({ minLength: 1, maxLength: 255 }) }),
        response: { 200: SearchResult },
      },
    },
    async (request) => artifacts.search(request.subject, request.query.q),
  );
}
