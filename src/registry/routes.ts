import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { actorOf, type EventBus, type RegistryOperationEvent } from '../platform/events/bus.ts';
import { statusOf, toOciError } from '../platform/http/errors.ts';
import type { Metrics } from '../platform/http/metrics.ts';
import { sendPositional } from '../platform/http/send-positional.ts';
import { OciError } from '../platform/oci/errors.ts';
import { type BlobService, parseRangeHeader } from './blobs.ts';
import { type ListingService, referrersIndex } from './listings.ts';
import type { ManifestService } from './manifests.ts';
import { ALLOWED_METHODS, matchV2Path, type V2Route } from './router.ts';
import { type ChunkInput, type ChunkRange, rangeHeader, type UploadService } from './uploads.ts';

/** What the auth layer tells the registry about an authorised caller. */
export interface RegistryCaller {
  /** Hides catalog entries the caller may not see; absent means everything is visible. */
  readonly canSee?: (repository: string) => boolean | Promise<boolean>;
}

/**
 * Authentication and authorisation of /v2 requests, implemented by src/iam. It throws an
 * OciError (401 with a challenge, 403, 404 for a project that does not exist, 429) or returns the caller.
 */
export interface RegistryGuard {
  check(request: FastifyRequest, route: V2Route, query: Readonly<Record<string, string | undefined>>): Promise<RegistryCaller>;
}

export interface RegistryRoutesDeps {
  readonly blobs: BlobService;
  readonly uploads: UploadService;
  readonly manifests: ManifestService;
  readonly listings: ListingService;
  readonly metrics: Metrics;
  /** server.externalUrl: Location headers are absolute under it; relative when it is empty. */
  readonly externalUrl: string;
  /** Absent when auth is off: /v2 is then open to anyone. */
  readonly guard?: RegistryGuard | undefined;
  /** Where pushes, pulls and deletes are announced (audit, webhooks); absent in bare setups. */
  readonly events?: EventBus | undefined;
  /** Told of every manifest GET that found its manifest (pull times); synchronous, must not block. */
  readonly onManifestPulled?: ((repository: string, digest: string) => void) | undefined;
}

type Query = Record<string, string | undefined>;

function parseQuery(url: string): { path: string; query: Query } {
  const q = url.indexOf('?');
  if (q < 0) return { path: url, query: {} };
  const query: Query = {};
  for (const [key, value] of new URLSearchParams(url.slice(q + 1))) query[key] ??= value;
  return { path: url.slice(0, q), query };
}

function contentLengthOf(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  return header === undefined ? undefined : Number(header);
}

/** Content-Range of a chunk: "start-end", also accepted with a "bytes " or "bytes=" prefix and a "/total" suffix. */
export function parseContentRange(header: string | undefined, currentOffset: () => Promise<number>, location: string): Promise<ChunkRange | undefined> | ChunkRange | undefined {
  if (header === undefined) return undefined;
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (match && Number(match[2]) >= Number(match[1])) return { start: Number(match[1]), end: Number(match[2]) };
  return currentOffset().then((offset) => {
    throw new OciError('RANGE_INVALID', `malformed Content-Range "${header}"`, undefined, { Range: rangeHeader(offset), Location: location });
  });
}

/** If-None-Match against our strong ETag, with the weak comparison RFC 9110 §13.1.2 asks for: `*`, lists and W/ tags. */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag);
}

function linkHeader(path: string, params: Record<string, string>): string {
  return `<${path}?${new URLSearchParams(params).toString()}>; rel="next"`;
}

/** The /v2 API. Bodies stay streams: every content-type parser is replaced by a pass-through. */
export async function registryRoutes(app: FastifyInstance, deps: RegistryRoutesDeps): Promise<void> {
  const base = deps.externalUrl.replace(/\/+$/, '');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  // Bodies here are blob bytes or manifests, whatever Content-Type a client sends (the reference
  // registry accepts any). Fastify refuses a Content-Type it cannot parse ("foo", ";;;") before any
  // parser runs, so the header is set aside before parsing and read back by the manifest handler.
  const declaredContentType = new WeakMap<FastifyRequest, string | undefined>();
  app.addHook('onRequest', async (request, reply) => {
    reply.header('docker-distribution-api-version', 'registry/2.0');
    declaredContentType.set(request, request.headers['content-type']);
    if (request.headers['content-type'] !== undefined) request.headers['content-type'] = 'application/octet-stream';
  });

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const { path, query } = parseQuery(request.url);
    const route = path === '/v2' ? ({ kind: 'base' } as const) : matchV2Path(path.slice('/v2/'.length));
    if (!route) throw new OciError('NOT_FOUND', `no route for ${request.method} ${path}`);
    request.metricsRoute = `v2_${route.kind}`;
    if (!ALLOWED_METHODS[route.kind].includes(request.method)) {
      reply.header('allow', ALLOWED_METHODS[route.kind].join(', '));
      throw new OciError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${route.kind}`);
    }
    try {
      const caller = deps.guard ? await deps.guard.check(request, route, query) : {};
      return await dispatch(route, request, reply, query, caller);
    } catch (err) {
      if (deps.events) {
        if (route.kind === 'manifest') announceFailure(request, route.name, route.reference, err);
        if ('name' in route) announceQuotaRefusal(request, route.name, err);
      }
      throw err;
    }
  };

  /** A refused or failed manifest operation. The 401 that starts every token handshake is not a failure. */
  function announceFailure(request: FastifyRequest, repository: string, reference: string, err: unknown): void {
    const error = toOciError(err);
    const status = statusOf(error.code);
    if (status === 401 && request.headers.authorization === undefined) return;
    if (request.method === 'HEAD') return;
    const isDigest = reference.includes(':');
    deps.events?.emit({
      type: 'registry.operation',
      at: Date.now(),
      actor: actorOf(request),
      operation: request.method === 'GET' ? 'pull' : request.method === 'DELETE' ? 'delete' : 'push',
      resourceType: request.method === 'DELETE' && !isDigest ? 'tag' : 'artifact',
      repository,
      reference,
      ...(isDigest ? { digest: reference } : { tag: reference }),
      result: 'failure',
      status,
      reason: `${error.code}: ${error.message}`,
    });
  }

  /** A push the project's storage quota refused (the quota ledger's DENIED carries the figures). */
  function announceQuotaRefusal(request: FastifyRequest, repository: string, err: unknown): void {
    if (!(err instanceof OciError) || err.code !== 'DENIED') return;
    const detail = err.detail as { project?: unknown; hard?: unknown; used?: unknown } | undefined;
    if (typeof detail?.project !== 'string' || typeof detail.hard !== 'number' || typeof detail.used !== 'number') return;
    deps.events?.emit({ type: 'quota.exceeded', at: Date.now(), actor: actorOf(request), project: detail.project, repository, used: detail.used, hard: detail.hard, message: err.message });
  }

  function announce(request: FastifyRequest, event: Omit<RegistryOperationEvent, 'type' | 'at' | 'actor' | 'result'>): void {
    deps.events?.emit({ type: 'registry.operation', at: Date.now(), actor: actorOf(request), result: 'success', ...event });
  }

  async function dispatch(route: V2Route, request: FastifyRequest, reply: FastifyReply, query: Query, caller: RegistryCaller): Promise<FastifyReply> {
    const method = request.method;
    switch (route.kind) {
      case 'base':
        return reply.header('content-type', 'application/json').send(method === 'HEAD' ? undefined : '{}');

      case 'catalog': {
        const page = await deps.listings.catalog(query.n, query.last, caller.canSee);
        if (page.next !== undefined) reply.header('link', linkHeader('/v2/_catalog', { n: String(page.items.length), last: page.next }));
        return reply.header('content-type', 'application/json').send(JSON.stringify({ repositories: page.items }));
      }

      case 'tags': {
        const page = await deps.listings.tags(route.name, query.n, query.last);
        if (page.next !== undefined) reply.header('link', linkHeader(`/v2/${route.name}/tags/list`, { n: String(page.items.length), last: page.next }));
        return reply.header('content-type', 'application/json').send(JSON.stringify({ name: route.name, tags: page.items }));
      }

      case 'referrers': {
        const artifactType = query.artifactType;
        const page = await deps.listings.referrers(route.name, route.digest, artifactType, query.n, query.last);
        if (artifactType) reply.header('oci-filters-applied', 'artifactType');
        if (page.next !== undefined) {
          reply.header('link', linkHeader(`/v2/${route.name}/referrers/${route.digest}`, { ...(artifactType ? { artifactType } : {}), n: String(page.items.length), last: page.next }));
        }
        // A Buffer, so that Fastify appends no charset: clients compare this media type exactly.
        return reply.header('content-type', 'application/vnd.oci.image.index.v1+json').send(Buffer.from(referrersIndex(page.items)));
      }

      case 'manifest':
        return manifest(route.name, route.reference, request, reply);

      case 'blob':
        return blob(route.name, route.digest, request, reply);

      case 'uploads': {
        const location = (id: string) => `${base}/v2/${route.name}/blobs/uploads/${id}`;
        const result = await deps.uploads.start(route.name, { digest: query.digest, mount: query.mount, from: query.from }, chunkOf(request.raw, undefined));
        if (result.kind === 'blob') {
          return reply
            .code(201)
            .header('location', `${base}/v2/${route.name}/blobs/${result.digest}`)
            .header('docker-content-digest', result.digest)
            .header('content-length', '0')
            .send();
        }
        return reply
          .code(202)
          .header('location', location(result.id))
          .header('docker-upload-uuid', result.id)
          .header('range', rangeHeader(result.offset))
          .header('content-length', '0')
          .send();
      }

      case 'upload':
        return upload(route.name, route.id, request, reply, query);
    }
  }

  function chunkOf(raw: IncomingMessage, range: ChunkRange | undefined): ChunkInput {
    return { body: raw, contentLength: contentLengthOf(raw), range };
  }

  async function upload(name: string, id: string, request: FastifyRequest, reply: FastifyReply, query: Query): Promise<FastifyReply> {
    const location = `${base}/v2/${name}/blobs/uploads/${id}`;
    const progress = (offset: number) =>
      reply.header('location', location).header('range', rangeHeader(offset)).header('docker-upload-uuid', id).header('content-length', '0');
    switch (request.method) {
      case 'GET':
        return progress(await deps.uploads.status(name, id)).code(204).send();
      case 'DELETE':
        await deps.uploads.cancel(name, id);
        return reply.code(204).header('content-length', '0').send();
      case 'PATCH': {
        const range = await parseContentRange(request.headers['content-range'], () => deps.uploads.status(name, id), location);
        const offset = await deps.uploads.append(name, id, chunkOf(request.raw, range), location);
        return progress(offset).code(202).send();
      }
      default: {
        const range = await parseContentRange(request.headers['content-range'], () => deps.uploads.status(name, id), location);
        const digest = await deps.uploads.complete(name, id, query.digest, chunkOf(request.raw, range), location);
        return reply
          .code(201)
          .header('location', `${base}/v2/${name}/blobs/${digest}`)
          .header('docker-content-digest', digest)
          .header('content-length', '0')
          .send();
      }
    }
  }

  async function blob(name: string, digest: string, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    if (request.method === 'DELETE') {
      await deps.blobs.delete(name, digest);
      return reply.code(202).header('content-length', '0').send();
    }
    const head = await deps.blobs.head(name, digest);
    const etag = `"${head.digest}"`;
    reply.header('docker-content-digest', head.digest).header('etag', etag).header('accept-ranges', 'bytes');
    // Only the content is cacheable for a year: a 416 or a 404 for content missing from storage is not.
    const cacheable = () => reply.header('cache-control', 'max-age=31536000');
    if (noneMatch(request.headers['if-none-match'], etag)) return cacheable().code(304).send();
    const range = parseRangeHeader(request.headers.range, head.size);
    const length = range ? range.end - range.start + 1 : head.size;
    const content = request.method === 'HEAD' || head.manifest ? undefined : await deps.blobs.open(head.digest, range);
    cacheable().header('content-type', 'application/octet-stream').header('content-length', String(length));
    if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${head.size}`);
    if (head.manifest && request.method !== 'HEAD') {
      deps.metrics.bytesSent.inc(length);
      const bytes = Buffer.from(head.manifest.buffer, head.manifest.byteOffset, head.manifest.byteLength);
      return reply.send(range ? bytes.subarray(range.start, range.end + 1) : bytes);
    }
    if (!content) return reply.send();
    deps.metrics.bytesSent.inc(length);
    if (content.kind === 'stream') return reply.send(content.stream);
    // Written here rather than by reply.send(): see sendPositional. The onResponse hook still runs.
    reply.hijack();
    reply.raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders);
    await sendPositional(content.reader, range?.start ?? 0, range ? range.end : head.size - 1, reply.raw);
    return reply;
  }

  async function manifest(name: string, reference: string, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    if (request.method === 'PUT') {
      const result = await deps.manifests.put(name, reference, declaredContentType.get(request), request.raw, contentLengthOf(request.raw));
      if (result.subject) reply.header('oci-subject', result.subject);
      deps.metrics.bytesReceived.inc(result.size);
      if (deps.events) {
        const mediaType = declaredContentType.get(request);
        announce(request, {
          operation: 'push',
          resourceType: 'artifact',
          repository: name,
          reference,
          digest: result.digest,
          ...(reference.includes(':') ? {} : { tag: reference }),
          ...(mediaType ? { mediaType } : {}),
          size: result.size,
          status: 201,
        });
      }
      return reply
        .code(201)
        .header('location', `${base}/v2/${name}/manifests/${result.digest}`)
        .header('docker-content-digest', result.digest)
        .header('content-length', '0')
        .send();
    }
    if (request.method === 'DELETE') {
      await deps.manifests.delete(name, reference);
      if (deps.events) {
        const isDigest = reference.includes(':');
        announce(request, { operation: 'delete', resourceType: isDigest ? 'artifact' : 'tag', repository: name, reference, ...(isDigest ? { digest: reference } : { tag: reference }), status: 202 });
      }
      return reply.code(202).header('content-length', '0').send();
    }
    const stored = await deps.manifests.get(name, reference);
    if (request.method === 'GET') {
      deps.onManifestPulled?.(name, stored.digest);
      if (deps.events) {
        announce(request, {
          operation: 'pull',
          resourceType: 'artifact',
          repository: name,
          reference,
          digest: stored.digest,
          ...(reference.includes(':') ? {} : { tag: reference }),
          mediaType: stored.mediaType,
          size: stored.size,
          status: 200,
        });
      }
    }
    const etag = `"${stored.digest}"`;
    reply
      .header('content-type', stored.mediaType)
      .header('docker-content-digest', stored.digest)
      .header('etag', etag)
      .header('content-length', String(stored.size));
    if (noneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send();
    if (request.method === 'HEAD') return reply.send();
    deps.metrics.bytesSent.inc(stored.size);
    return reply.send(Buffer.from(stored.content.buffer, stored.content.byteOffset, stored.content.byteLength));
  }

  // Every method the server knows (OPTIONS, TRACE … too), so that a wrong one gets 405 with Allow, not 404.
  const methods = app.supportedMethods;
  app.route({ method: methods, url: '/v2', handler });
  app.route({ method: methods, url: '/v2/', handler });
  app.route({ method: methods, url: '/v2/*', handler });
}
