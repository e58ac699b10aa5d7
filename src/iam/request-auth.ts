/**
 * Authentication of management-API requests: HTTP Basic (user or robot), a session cookie (with
 * CSRF protection on state changes) or nothing (anonymous). Sets request.subject for the route's
 * AccessControl check. Registry bearer tokens are valid on /v2 only, as in Harbor.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../platform/http/api.ts';
import { ANONYMOUS } from './access.ts';
import { type Authenticator, loginClientOf, parseBasic, parseBearer, type SessionDirectory } from './authenticate.ts';
import { CSRF_HEADER, readSessionCookie } from './sessions.ts';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface ApiAuthDeps {
  readonly authenticator: Authenticator;
  readonly sessions: SessionDirectory;
}

export function apiAuthHook(deps: ApiAuthDeps): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return async (request, reply) => {
    request.subject = ANONYMOUS;
    request.authVia = 'anonymous';
    const authorization = request.headers.authorization;
    if (authorization !== undefined) {
      const basic = parseBasic(authorization);
      if (basic) {
        const subject = await deps.authenticator.login(basic.username, basic.password, request.ip, loginClientOf(request));
        request.subject = subject;
        request.authVia = 'basic';
        request.actor = { name: subject.name, kind: subject.kind };
        return;
      }
      if (parseBearer(authorization)) throw new ApiError('UNAUTHORIZED', 'bearer tokens are accepted on /v2 only; use Basic credentials or a session here');
      throw new ApiError('UNAUTHORIZED', 'unsupported Authorization scheme; use Basic');
    }
    const cookie = readSessionCookie(request.headers.cookie);
    if (cookie === undefined) return;
    const session = await deps.sessions.resolve(cookie);
    // An expired or unknown session is simply no session: the request goes on as anonymous.
    if (!session) return;
    if (!SAFE_METHODS.has(request.method)) {
      const given = request.headers[CSRF_HEADER];
      if (typeof given !== 'string' || !sameToken(given, session.csrfToken)) {
        throw new ApiError('FORBIDDEN', `CSRF token missing or wrong: send the ${CSRF_HEADER} header you got at login`);
      }
    }
    request.subject = session.subject;
    request.authVia = 'session';
    request.actor = { name: session.subject.name, kind: 'user' };
    reply.header(CSRF_HEADER, session.csrfToken);
  };
}
