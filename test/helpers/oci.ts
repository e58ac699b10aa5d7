import { createHash, randomBytes } from 'node:crypto';

/** Small deterministic OCI content for API tests. Real images for e2e tests come from umoci/buildah. */
export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export function sha512(bytes: Uint8Array | string): string {
  return `sha512:${createHash('sha512').update(bytes).digest('hex')}`;
}

export function randomBlob(size: number): Buffer {
  return randomBytes(size);
}

export interface PushedBlob {
  readonly digest: string;
  readonly size: number;
  readonly bytes: Buffer;
}

/** Pushes a blob monolithically (POST ?digest=) and returns its descriptor fields. */
export async function pushBlob(base: string, name: string, bytes: Buffer, headers: Record<string, string> = {}): Promise<PushedBlob> {
  const digest = sha256(bytes);
  const res = await fetch(`${base}/v2/${name}/blobs/uploads/?digest=${encodeURIComponent(digest)}`, {
    method: 'POST',
    body: bytes,
    headers: { 'content-type': 'application/octet-stream', ...headers },
  });
  if (res.status !== 201) throw new Error(`blob push failed: ${res.status} ${await res.text()}`);
  return { digest, size: bytes.length, bytes };
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';

/** Pushes a config and `layers` random layers, returns the manifest JSON (not pushed). */
export async function imageManifest(
  base: string,
  name: string,
  options: { layers?: number; layerSize?: number; subject?: { digest: string; size: number; mediaType: string }; artifactType?: string; annotations?: Record<string, string>; headers?: Record<string, string> } = {},
) {
  const headers = options.headers ?? {};
  const config = await pushBlob(base, name, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') })), headers);
  const layers: PushedBlob[] = [];
  for (let i = 0; i < (options.layers ?? 1); i++) layers.push(await pushBlob(base, name, randomBlob((options.layerSize ?? 512) + i), headers));
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    ...(options.artifactType ? { artifactType: options.artifactType } : {}),
    config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
    ...(options.subject ? { subject: options.subject } : {}),
    ...(options.annotations ? { annotations: options.annotations } : {}),
  };
  return { manifest, bytes: Buffer.from(JSON.stringify(manifest)), config, layers };
}

export async function putManifest(base: string, name: string, reference: string, bytes: Buffer, mediaType = OCI_MANIFEST, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}/v2/${name}/manifests/${reference}`, { method: 'PUT', body: bytes, headers: { 'content-type': mediaType, ...headers } });
}

/** The first error code of a registry error body. */
export async function errorCode(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { errors?: Array<{ code: string }> };
  return body.errors?.[0]?.code;
}
