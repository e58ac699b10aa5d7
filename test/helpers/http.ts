import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { TestServer } from './server.ts';

/** A response read off a raw socket. Header names are lower-cased; a repeated header keeps its last value. */
export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

function hostPort(base: string): { host: string; port: number } {
  const url = new URL(base);
  return { host: url.hostname, port: Number(url.port) };
}

function decodeChunked(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = Number.parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Parses one HTTP/1.1 response from all the bytes of a connection the server closed. */
export function parseRawResponse(data: Buffer, method = 'GET'): RawResponse {
  const headEnd = data.indexOf('\r\n\r\n');
  assert.ok(headEnd > 0, `no complete response head in ${JSON.stringify(data.toString('latin1').slice(0, 200))}`);
  const lines = data.subarray(0, headEnd).toString('latin1').split('\r\n');
  const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  assert.ok(statusLine, `bad status line ${lines[0]}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const status = Number(statusLine[1]);
  let body = data.subarray(headEnd + 4);
  // A HEAD, 204 or 304 response has no body: keep whatever bytes followed, so tests can assert there are none.
  if (method === 'HEAD' || status === 204 || status === 304) return { status, headers, body };
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') body = decodeChunked(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status, headers, body };
}

/**
 * Sends `head` (request line and headers, without the blank line; "Connection: close" is added)
 * and `body` over a fresh socket exactly as given, then reads the whole response. `halfClose`
 * sends FIN after the body, as a client that gave up writing would.
 */
export function rawRequest(base: string, head: string, body: Buffer | string = Buffer.alloc(0), options: { halfClose?: boolean } = {}): Promise<RawResponse> {
  const { host, port } = hostPort(base);
  const method = head.slice(0, head.indexOf(' '));
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    let failure: Error | undefined;
    // The server may reset a connection whose request it refused before reading it all (EPIPE,
    // ECONNRESET); what it answered first still counts.
    socket.on('error', (err) => {
      failure ??= err;
    });
    socket.on('close', () => {
      if (received.length === 0 && failure) {
        reject(failure);
        return;
      }
      try {
        resolve(parseRawResponse(Buffer.concat(received), method));
      } catch (err) {
        reject(err);
      }
    });
    // No half-close after the body: Node's HTTP server aborts a request whose client sent FIN.
    // With "Connection: close" the server closes the socket once it answered.
    socket.write(`${head.replace(/\r?\n$/, '')}\r\nConnection: close\r\n\r\n`);
    if (options.halfClose) socket.end(body);
    else socket.write(body);
  });
}

/**
 * Opens a socket, sends `head` (it should declare a Content-Length larger than `partial`) and the
 * `partial` body, waits until `ready()` holds (e.g. the server started writing the chunk), then
 * destroys the socket as a client that crashed mid-request would. Resolves once the socket is closed.
 */
export async function abortMidBody(base: string, head: string, partial: Buffer, ready: () => Promise<boolean> = async () => true): Promise<void> {
  const { host, port } = hostPort(base);
  const socket = net.connect({ host, port });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  await new Promise<void>((resolve, reject) => socket.write(`${head.replace(/\r?\n$/, '')}\r\n\r\n`, (err) => (err ? reject(err) : resolve())));
  await new Promise<void>((resolve, reject) => socket.write(partial, (err) => (err ? reject(err) : resolve())));
  await waitUntil(ready, 'the server to receive the partial body');
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.destroy();
  await closed;
}

/** Polls `predicate` until it holds; fails after `timeoutMs` (a deadline for a state, not a timing assertion). */
export async function waitUntil(predicate: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every file below `folder`, as paths relative to it ([] when the folder does not exist). */
export async function listFiles(folder: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(folder);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const entry of entries) {
    const full = path.join(folder, entry);
    let isDirectory: boolean;
    try {
      isDirectory = (await stat(full)).isDirectory();
    } catch (err) {
      // Removed by the server between the listing and now.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    if (isDirectory) out.push(...(await listFiles(full)).map((f) => path.join(entry, f)));
    else out.push(entry);
  }
  return out.sort();
}

export const blobsDir = (server: TestServer): string => path.join(server.dataDir, 'storage', 'blobs');
export const uploadsDir = (server: TestServer): string => path.join(server.dataDir, 'storage', 'uploads');

/** Size of an upload's stored data, or undefined when there is none. */
export async function uploadFileSize(server: TestServer, id: string): Promise<number | undefined> {
  try {
    return (await stat(path.join(uploadsDir(server), id))).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Digests ("algorithm:hex") of the committed blob files on disk. */
export async function storedBlobDigests(server: TestServer): Promise<string[]> {
  return (await listFiles(blobsDir(server))).map((file) => {
    const [algorithm, , hex] = file.split(path.sep);
    return `${algorithm}:${hex}`;
  });
}

/** Asserts status and OCI error code of a fetch response, and that the body is the spec's error shape. */
export async function assertError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text}`);
  const body = JSON.parse(text) as { errors?: Array<{ code: string; message: string }> };
  assert.ok(Array.isArray(body.errors) && body.errors.length > 0, `no errors array in ${text}`);
  assert.equal(body.errors[0]?.code, code, text);
  assert.equal(typeof body.errors[0]?.message, 'string');
}

/** The same for a raw response. */
export function assertRawError(res: RawResponse, status: number, code: string): void {
  const text = res.body.toString('utf8');
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text}`);
  const body = JSON.parse(text) as { errors?: Array<{ code: string }> };
  assert.equal(body.errors?.[0]?.code, code, text);
}

export interface StartedUpload {
  readonly id: string;
  /** The Location header as the server sent it (a path). */
  readonly location: string;
  /** Absolute URL of the session. */
  readonly url: string;
}

/** POST /v2/<name>/blobs/uploads/ → a new session. */
export async function startUpload(base: string, name: string, headers: Record<string, string> = {}): Promise<StartedUpload> {
  const res = await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST', headers });
  assert.equal(res.status, 202, await res.clone().text());
  await res.arrayBuffer();
  const location = res.headers.get('location');
  const id = res.headers.get('docker-upload-uuid');
  assert.ok(location && id);
  return { id, location, url: new URL(location, base).toString() };
}

/** Appends `url`'s query with `params`. */
export function withQuery(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [key, value] of Object.entries(params)) u.searchParams.set(key, value);
  return u.toString();
}

/** GET upload status (204): its Range header, e.g. "0-99" after 100 bytes ("0-0" when empty). */
export async function uploadRange(base: string, location: string): Promise<string> {
  const res = await fetch(new URL(location, base));
  assert.equal(res.status, 204, await res.clone().text());
  const range = res.headers.get('range');
  assert.match(range ?? '', /^0-\d+$/);
  return range as string;
}

export async function readBlob(base: string, name: string, digest: string): Promise<Response> {
  return fetch(`${base}/v2/${name}/blobs/${digest}`);
}

/** Asserts no response of the server was a 5xx (from its access log). */
export function assertNoServerErrors(server: TestServer): void {
  const failures = server.logs.filter((line) => {
    try {
      const entry = JSON.parse(line) as { status?: number; level?: number };
      return (entry.status ?? 0) >= 500 || (entry.level ?? 0) >= 50;
    } catch {
      return false;
    }
  });
  assert.deepEqual(failures, [], 'the server answered with a 5xx or logged an error');
}

/** After a cluster test: checks that no node answered a 5xx or logged an error, then closes the nodes, the first last (it removes what they share). */
export async function closeCluster(first: TestServer, ...others: TestServer[]): Promise<void> {
  try {
    for (const node of [first, ...others]) assertNoServerErrors(node);
  } finally {
    for (const node of others.reverse()) await node.close();
    await first.close();
  }
}
