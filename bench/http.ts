/**
 * A minimal HTTP/1.1 client on node:http with a keep-alive Agent. Request bodies are a Buffer,
 * a list of Buffers (written in order, Content-Length summed) or an async iterable (streamed with
 * backpressure, chunked transfer encoding); response bodies are counted and dropped unless kept.
 */
import http from 'node:http';
import { once } from 'node:events';

export type Body = Buffer | readonly Buffer[] | AsyncIterable<Buffer>;

export interface RequestOptions {
  readonly headers?: Record<string, string>;
  readonly body?: Body;
  /** Status codes that count as success; anything else throws. */
  readonly expect?: readonly number[];
  /** Keep the response body (up to 16 MiB) instead of only counting it. */
  readonly keepBody?: boolean;
  /** Called for every response chunk (hashing, counting). */
  readonly onData?: (chunk: Buffer) => void;
}

export interface Response {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly bytes: number;
  readonly body: Buffer | undefined;
}

export class HttpError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.status = status;
  }
}

/** Hard bound on any single request, so a stuck server can never hang the benchmark. */
const REQUEST_TIMEOUT_MS = 120_000;

function isBufferList(body: Body): body is readonly Buffer[] {
  return Array.isArray(body);
}

export class Client {
  readonly base: URL;
  readonly agent: http.Agent;
  /** Sent with every request (e.g. Authorization); a request's own headers override them. */
  readonly defaultHeaders: Readonly<Record<string, string>>;

  constructor(baseUrl: string, concurrency: number, options: { readonly headers?: Record<string, string> } = {}) {
    this.base = new URL(baseUrl);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
    this.defaultHeaders = { ...(options.headers ?? {}) };
  }

  close(): void {
    this.agent.destroy();
  }

  /** A Location header (absolute, as the reference registry sends, or a path) as path + query. */
  pathOf(location: string): string {
    const url = new URL(location, this.base);
    return url.pathname + url.search;
  }

  request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { ...this.defaultHeaders, ...(options.headers ?? {}) };
    const body = options.body;
    if (body !== undefined) {
      if (Buffer.isBuffer(body)) headers['content-length'] = String(body.length);
      else if (isBufferList(body)) headers['content-length'] = String(body.reduce((n, b) => n + b.length, 0));
    } else if (method === 'PUT' || method === 'POST' || method === 'PATCH') {
      headers['content-length'] = '0';
    }
    return new Promise<Response>((resolve, reject) => {
      const req = http.request(
        { host: this.base.hostname, port: this.base.port, method, path, headers, agent: this.agent },
        (res) => {
          const status = res.statusCode ?? 0;
          // Keep the body when asked, and error bodies for the message; count everything else.
          const keep = options.keepBody === true || status >= 400;
          let bytes = 0;
          const kept: Buffer[] = [];
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            options.onData?.(chunk);
            if (keep && bytes <= 16 << 20) kept.push(chunk);
          });
          res.once('error', reject);
          res.once('end', () => {
            const keptBody = keep ? Buffer.concat(kept) : undefined;
            if (options.expect && !options.expect.includes(status)) {
              reject(new HttpError(`${method} ${path} → ${status} ${keptBody?.toString('utf8', 0, 300) ?? ''}`.trim(), status));
              return;
            }
            resolve({ status, headers: res.headers, bytes, body: keptBody });
          });
        },
      );
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: no progress for ${REQUEST_TIMEOUT_MS} ms`)));
      req.once('error', reject);
      if (body === undefined) {
        req.end();
      } else if (Buffer.isBuffer(body)) {
        req.end(body);
      } else {
        writeAll(req, body).catch((err: Error) => req.destroy(err));
      }
    });
  }
}

async function writeAll(req: http.ClientRequest, parts: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<void> {
  for await (const part of parts) {
    if (req.destroyed) return;
    if (!req.write(part)) await once(req, 'drain');
  }
  req.end();
}
