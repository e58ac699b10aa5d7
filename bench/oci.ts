/**
 * Benchmark content and the distribution-API operations the scenarios are made of. Blob content
 * is a slice of one random pool plus a 16-byte unique tail, so every push uploads new content
 * (no server-side dedupe shortcut) while its digest costs only a copy of a precomputed hash state.
 */
import { createHash, type Hash, randomFillSync } from 'node:crypto';
import type { Client } from './http.ts';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MANIFEST_ACCEPT = [OCI_MANIFEST, 'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');
const OCTETS = { 'content-type': 'application/octet-stream' };

const TAIL = 16;

export interface Blob {
  readonly parts: readonly Buffer[];
  readonly size: number;
  readonly digest: string;
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

/** Random bytes shared by every blob family (filled once per run). */
export function randomPool(bytes: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(bytes));
}

/** Blobs of one size: a fixed prefix from the pool and a unique tail per variant. */
export class BlobFamily {
  readonly size: number;
  readonly #prefix: Buffer;
  readonly #prefixHash: Hash;
  readonly #nonce: string;

  constructor(pool: Buffer, size: number, nonce: string, poolOffset = 0) {
    if (size <= TAIL) throw new Error(`blob size ${size} is too small`);
    if (poolOffset + size - TAIL > pool.length) throw new Error(`pool of ${pool.length} bytes too small for ${size}`);
    this.size = size;
    this.#prefix = pool.subarray(poolOffset, poolOffset + size - TAIL);
    this.#prefixHash = createHash('sha256').update(this.#prefix);
    this.#nonce = nonce;
  }

  variant(tag: string): Blob {
    const tail = createHash('sha256').update(`${this.#nonce}/${tag}`).digest().subarray(0, TAIL);
    const digest = `sha256:${this.#prefixHash.copy().update(tail).digest('hex')}`;
    return { parts: [this.#prefix, tail], size: this.size, digest };
  }
}

export function blobOf(bytes: Buffer): Blob {
  return { parts: [bytes], size: bytes.length, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
}

/** The bytes [start, end) of a blob made of parts, as views (no copy). */
export function sliceParts(parts: readonly Buffer[], start: number, end: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const part of parts) {
    const from = Math.max(start, at);
    const to = Math.min(end, at + part.length);
    if (from < to) out.push(part.subarray(from - at, to - at));
    at += part.length;
  }
  return out;
}

export function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

function locationOf(client: Client, headers: Record<string, string | string[] | undefined>): string {
  const location = headers.location;
  if (typeof location !== 'string') throw new Error('response without Location');
  return client.pathOf(location);
}

/** POST a session, then PUT the whole blob with ?digest= (monolithic for both registries). */
export async function pushPostPut(client: Client, repo: string, blob: Blob): Promise<number> {
  const started = await client.request('POST', `/v2/${repo}/blobs/uploads/`, { expect: [202] });
  await client.request('PUT', withDigest(locationOf(client, started.headers), blob.digest), { headers: OCTETS, body: blob.parts, expect: [201] });
  return blob.size;
}

/** Single-request monolithic upload, POST ?digest= with the body (Berth; the reference ignores it). */
export async function pushPostDigest(client: Client, repo: string, blob: Blob): Promise<number> {
  await client.request('POST', `/v2/${repo}/blobs/uploads/?digest=${encodeURIComponent(blob.digest)}`, { headers: OCTETS, body: blob.parts, expect: [201] });
  return blob.size;
}

/** POST, PATCH chunks with Content-Range (following each Location), PUT ?digest= without a body. */
export async function pushChunked(client: Client, repo: string, blob: Blob, chunkBytes: number): Promise<number> {
  const started = await client.request('POST', `/v2/${repo}/blobs/uploads/`, { expect: [202] });
  let location = locationOf(client, started.headers);
  for (let start = 0; start < blob.size; start += chunkBytes) {
    const end = Math.min(blob.size, start + chunkBytes);
    const res = await client.request('PATCH', location, {
      headers: { ...OCTETS, 'content-range': `${start}-${end - 1}` },
      body: sliceParts(blob.parts, start, end),
      expect: [202],
    });
    location = locationOf(client, res.headers);
  }
  await client.request('PUT', withDigest(location, blob.digest), { expect: [201] });
  return blob.size;
}

/**
 * POST, one streamed PATCH (chunked transfer encoding, length unknown to the server, as docker
 * and skopeo send it) hashing on the fly, then PUT ?digest=. The source is never held whole.
 */
export async function pushStreamed(client: Client, repo: string, source: AsyncIterable<Buffer>): Promise<{ bytes: number; digest: string }> {
  const started = await client.request('POST', `/v2/${repo}/blobs/uploads/`, { expect: [202] });
  const hash = createHash('sha256');
  let bytes = 0;
  async function* hashed() {
    for await (const chunk of source) {
      hash.update(chunk);
      bytes += chunk.length;
      yield chunk;
    }
  }
  const patched = await client.request('PATCH', locationOf(client, started.headers), { headers: OCTETS, body: hashed(), expect: [202] });
  const digest = `sha256:${hash.digest('hex')}`;
  await client.request('PUT', withDigest(locationOf(client, patched.headers), digest), { expect: [201] });
  return { bytes, digest };
}

export async function mountBlob(client: Client, repo: string, from: string, digest: string): Promise<void> {
  await client.request('POST', `/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, { expect: [201] });
}

export function imageManifest(config: Descriptor, layers: readonly Descriptor[], annotations?: Record<string, string>): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers,
      ...(annotations ? { annotations } : {}),
    }),
  );
}

export async function putManifest(client: Client, repo: string, reference: string, manifest: Buffer): Promise<string> {
  const res = await client.request('PUT', `/v2/${repo}/manifests/${reference}`, { headers: { 'content-type': OCI_MANIFEST }, body: manifest, expect: [201] });
  return String(res.headers['docker-content-digest'] ?? '');
}

export function configBlob(label: string): Blob {
  return blobOf(
    Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: { 'bench.label': label } }, rootfs: { type: 'layers', diff_ids: [] } })),
  );
}

export function descriptor(mediaType: string, blob: Blob): Descriptor {
  return { mediaType, digest: blob.digest, size: blob.size };
}
