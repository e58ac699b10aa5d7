/**
 * Helpers for tests of the Harbor-style management API with authentication on: Basic credentials,
 * authenticated pushes through /v2, JSON calls to /api/v2.0, and users, projects and members made
 * through the API itself.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256 } from './oci.ts';
import { startTestServer, type TestServer } from './server.ts';
import type { Backend } from './backends.ts';

export const ADMIN_PASSWORD = 'Admin12345';
export const USER_PASSWORD = 'Passw0rd-123';

export function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}
export const ADMIN = basic('admin', ADMIN_PASSWORD);

/** A server with authentication on: user `admin` (sysadmin) and the public project `library`. */
export function startAuthServer(backend: Backend): Promise<TestServer> {
  return startTestServer(backend, { config: { auth: { enabled: true }, adminPassword: ADMIN_PASSWORD } });
}

export interface CallOptions {
  readonly method?: string;
  /** An Authorization header value; none means anonymous. */
  readonly auth?: string;
  /** Sent as JSON unless it is a string (sent as is, for malformed bodies). */
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

/** Calls /api/v2.0`path`. */
export function api(base: string, path: string, options: CallOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.auth) headers.authorization = options.auth;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  return fetch(`${base}/api/v2.0${path}`, { method: options.method ?? 'GET', headers, ...(body !== undefined ? { body } : {}) });
}

/** Calls and expects `status`; returns the parsed JSON body (undefined when empty). */
export async function apiJson<T = unknown>(base: string, path: string, status: number, options: CallOptions = {}): Promise<{ body: T; res: Response }> {
  const res = await api(base, path, options);
  const text = await res.text();
  assert.equal(res.status, status, `${options.method ?? 'GET'} ${path}: expected ${status}, got ${res.status}: ${text}`);
  return { body: (text === '' ? undefined : JSON.parse(text)) as T, res };
}

/** Asserts Harbor's error shape {"errors":[{"code","message"}]} with this status and code. */
export async function assertApiError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text}`);
  const body = JSON.parse(text) as { errors?: Array<{ code: string; message: string }> };
  assert.ok(Array.isArray(body.errors) && body.errors.length === 1, text);
  assert.equal(body.errors[0]?.code, code, text);
  assert.equal(typeof body.errors[0]?.message, 'string');
  assert.ok((body.errors[0]?.message ?? '').length > 0);
}

export async function createUser(base: string, username: string): Promise<string> {
  await apiJson(base, '/users', 201, {
    method: 'POST',
    auth: ADMIN,
    body: { username, password: USER_PASSWORD, email: `${username}@example.com`, realname: username },
  });
  return basic(username, USER_PASSWORD);
}

export async function createProject(base: string, name: string, isPublic: boolean): Promise<number> {
  const { res } = await apiJson(base, '/projects', 201, { method: 'POST', auth: ADMIN, body: { project_name: name, metadata: { public: String(isPublic) } } });
  const { body } = await apiJson<{ project_id: number }>(base, `/projects/${name}`, 200, { auth: ADMIN, headers: { 'x-is-resource-name': 'true' } });
  assert.ok(res.headers.get('location'));
  return body.project_id;
}

/** Harbor role ids: 1 project admin, 2 developer, 3 guest, 4 maintainer, 5 limited guest. */
export async function addMember(base: string, project: string, username: string, roleId: number): Promise<void> {
  await apiJson(base, `/projects/${project}/members`, 201, { method: 'POST', auth: ADMIN, body: { role_id: roleId, member_user: { username } } });
}

// ── pushing through /v2 with credentials ──────────────────────────────────

export interface Pushed {
  readonly digest: string;
  readonly bytes: Buffer;
  readonly mediaType: string;
  /** What Harbor reports as the artifact size: manifest plus config and layers. */
  readonly size: number;
  readonly configDigest?: string;
}

export async function pushBlob(base: string, name: string, bytes: Buffer, auth = ADMIN): Promise<{ digest: string; size: number }> {
  const digest = sha256(bytes);
  const res = await fetch(`${base}/v2/${name}/blobs/uploads/?digest=${encodeURIComponent(digest)}`, {
    method: 'POST',
    body: bytes,
    headers: { authorization: auth, 'content-type': 'application/octet-stream' },
  });
  assert.equal(res.status, 201, `blob push to ${name}: ${res.status} ${await res.text()}`);
  return { digest, size: bytes.length };
}

export async function putManifest(base: string, name: string, reference: string, bytes: Buffer, mediaType: string, auth = ADMIN): Promise<void> {
  const res = await fetch(`${base}/v2/${name}/manifests/${reference}`, { method: 'PUT', body: bytes, headers: { authorization: auth, 'content-type': mediaType } });
  assert.equal(res.status, 201, `manifest push to ${name}:${reference}: ${res.status} ${await res.text()}`);
}

export interface ImageOptions {
  readonly tags?: readonly string[];
  readonly layers?: number;
  readonly architecture?: string;
  readonly annotations?: Record<string, string>;
  readonly artifactType?: string;
  readonly configMediaType?: string;
  readonly subject?: Pushed;
  readonly auth?: string;
}

/** Pushes a config, random layers and the manifest (by digest when no tags are given). */
export async function pushImage(base: string, name: string, options: ImageOptions = {}): Promise<Pushed> {
  const auth = options.auth ?? ADMIN;
  const configBytes = Buffer.from(
    JSON.stringify({ architecture: options.architecture ?? 'amd64', os: 'linux', created: '2024-01-02T03:04:05Z', config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(6).toString('hex') }),
  );
  const config = await pushBlob(base, name, configBytes, auth);
  const layers = [];
  for (let i = 0; i < (options.layers ?? 1); i++) layers.push(await pushBlob(base, name, randomBytes(200 + i * 10), auth));
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    ...(options.artifactType ? { artifactType: options.artifactType } : {}),
    config: { mediaType: options.configMediaType ?? OCI_CONFIG, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
    ...(options.subject ? { subject: { mediaType: options.subject.mediaType, digest: options.subject.digest, size: options.subject.bytes.length } } : {}),
    ...(options.annotations ? { annotations: options.annotations } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const digest = sha256(bytes);
  const tags = options.tags ?? [];
  if (tags.length === 0) await putManifest(base, name, digest, bytes, OCI_MANIFEST, auth);
  for (const tag of tags) await putManifest(base, name, tag, bytes, OCI_MANIFEST, auth);
  const size = bytes.length + config.size + layers.reduce((sum, l) => sum + l.size, 0);
  return { digest, bytes, mediaType: OCI_MANIFEST, size, configDigest: config.digest };
}

/** Pushes an index of already pushed manifests, each with a platform. */
export async function pushIndex(base: string, name: string, children: ReadonlyArray<{ image: Pushed; architecture: string }>, tags: readonly string[], auth = ADMIN): Promise<Pushed> {
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: children.map((c) => ({ mediaType: c.image.mediaType, digest: c.image.digest, size: c.image.bytes.length, platform: { architecture: c.architecture, os: 'linux' } })),
    annotations: { 'org.opencontainers.image.title': 'multi' },
  };
  const bytes = Buffer.from(JSON.stringify(index));
  const digest = sha256(bytes);
  if (tags.length === 0) await putManifest(base, name, digest, bytes, OCI_INDEX, auth);
  for (const tag of tags) await putManifest(base, name, tag, bytes, OCI_INDEX, auth);
  return { digest, bytes, mediaType: OCI_INDEX, size: bytes.length + children.reduce((sum, c) => sum + c.image.size, 0) };
}

/** GET /v2/<name>/manifests/<reference> with admin credentials: the status. */
export async function v2ManifestStatus(base: string, name: string, reference: string): Promise<number> {
  const res = await fetch(`${base}/v2/${name}/manifests/${reference}`, { headers: { authorization: ADMIN, accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
  await res.arrayBuffer();
  return res.status;
}

/** Parses a Link header into rel → path?query. */
export function links(res: Response): Record<string, string> {
  const header = res.headers.get('link');
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const part of header.split(',')) {
    const match = /<([^>]+)>;\s*rel="(\w+)"/.exec(part.trim());
    if (match) out[match[2] as string] = match[1] as string;
  }
  return out;
}
