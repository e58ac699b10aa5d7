import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { OciError } from '../oci/errors.ts';
import '../events/bus.ts';
import { ApiError, sendApiError, toApiError } from './api.ts';
import { errorBody, sendOciError, statusOf, toOciError } from './errors.ts';
import type { Metrics } from './metrics.ts';

export interface HttpServerOptions {
  logLevel: string;
  maxHeaderBytes: number;
  metrics: Metrics;
  /** A pino destination for tests; stdout otherwise. */
  logStream?: NodeJS.WritableStream;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** A low-cardinality route label for metrics, set by handlers that match paths themselves. */
    metricsRoute: string | undefined;
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Strips scheme and authority from an absolute-form request target (RFC 9112 §3.2.2). */
export function originForm(url: string): string {
  if (url.startsWith('/')) return url;
  const match = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*(.*)$/.exec(url);
  if (!match) return url;
  // An empty path is "/" even when a query follows: http://host?x=1 → /?x=1.
  const rest = match[1] ?? '';
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** The Fastify instance every capability registers its routes on: logging, ids, errors, metrics. */
export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const app = Fastify({
    logger: options.logStream
      ? { level: options.logLevel, stream: options.logStream }
      : { level: options.logLevel },
    http: { maxHeaderSize: options.maxHeaderBytes },
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    rewriteUrl: (req) => originForm(req.url ?? '/'),
    // One access-log line per request comes from our onResponse hook instead.
    logController: new LogController({ disableRequestLogging: true }),
    exposeHeadRoutes: false,
    // Path parameters carry project and repository names (up to 255 characters, more when encoded).
    routerOptions: { maxParamLength: 2048 },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // A path that cannot be percent-decoded matches no route: answer like any unknown route, in the OCI error shape.
    frameworkErrors(err, request, reply) {
      reply.header('x-request-id', request.id);
      const notFound = err.code === 'FST_ERR_BAD_URL';
      // The management API answers in Harbor's codes; everything else in the registry's.
      if (request.url.startsWith('/api/')) return sendApiError(reply, notFound ? new ApiError('NOT_FOUND', 'malformed URL') : toApiError(err));
      return sendOciError(reply, notFound ? toOciError({ statusCode: 404, message: 'malformed URL' }) : toOciError(err));
    },
    clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket) {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
      const code = tooLarge ? 'REQUEST_HEADER_TOO_LARGE' : 'BLOB_UPLOAD_INVALID';
      const body = errorBody(code, tooLarge ? 'request header fields too large' : 'malformed request');
      const status = statusOf(code);
      socket.end(
        `HTTP/1.1 ${status} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    },
  });

  app.decorateRequest('metricsRoute', undefined);
  app.decorateRequest('actor', undefined);

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });

  app.addHook('onResponse', async (request, reply) => {
    const labels = { method: request.method, route: request.metricsRoute ?? request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) };
    options.metrics.requests.inc(labels);
    options.metrics.latency.observe(labels, reply.elapsedTime / 1000);
    const level = reply.statusCode >= 500 ? 'error' : 'info';
    request.log[level]({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100, ua: request.headers['user-agent'] }, 'request completed');
    // Node's server.close() closes only the keep-alive connections idle at that moment; one whose
    // response (a streamed blob) finishes later would stay open until its keep-alive timeout and
    // hold up a graceful stop. Once closing, close each connection as soon as it falls idle.
    if (closing) app.server.closeIdleConnections();
  });

  // A client that hangs up before its response was sent: logged and counted as 499 (nginx's code for
  // it), so dropped pushes and pulls show up in the access log and the metrics.
  app.addHook('onRequestAbort', async (request) => {
    const labels = { method: request.method, route: request.metricsRoute ?? request.routeOptions.url ?? 'unmatched', status: '499' };
    options.metrics.requests.inc(labels);
    request.log.info({ method: request.method, url: request.url, status: 499, ua: request.headers['user-agent'] }, 'request aborted by the client');
  });

  app.setErrorHandler((err, request, reply) => {
    let ociError = toOciError(err);
    // A client that hung up mid-body (Ctrl-C during a push, a malformed chunk) is its mistake, not a server fault.
    if (ociError.code === 'INTERNAL_ERROR' && request.raw.readableAborted) {
      ociError = new OciError('BLOB_UPLOAD_INVALID', 'the client closed the connection before the request body was complete');
      request.log.info({ err: (err as Error).message }, 'client aborted the request');
    }
    if (ociError.code === 'INTERNAL_ERROR') request.log.error({ err }, 'unhandled error');
    return sendOciError(reply, ociError);
  });

  app.setNotFoundHandler((request, reply) => {
    return sendOciError(reply, toOciError({ statusCode: 404, message: `no route for ${request.method} ${request.url.split('?')[0]}` }));
  });

  return app;
}
