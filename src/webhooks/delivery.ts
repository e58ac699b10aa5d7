/**
 * One webhook request: a POST of a prepared body with a deadline, TLS verification unless the
 * target skips it, no redirects followed, the connection address checked (guardedLookup), and an
 * outcome that says what happened (status code, latency, error) rather than throwing.
 * Plus the per-target limit of requests in flight on this node.
 */
import http from 'node:http';
import https from 'node:https';
import { deliveryRefusal, guardedLookup } from './address.ts';

export interface DeliveryRequest {
  readonly address: string;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly skipCertVerify: boolean;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}

export interface DeliveryOutcome {
  readonly ok: boolean;
  /** Absent when no answer came. */
  readonly statusCode?: number;
  readonly latencyMs: number;
  /** Why it failed; absent on success. */
  readonly error?: string;
}

const SNIPPET_CHARS = 200;
export const USER_AGENT = 'Berth-Webhook/1.0';

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ECONNREFUSED') return `connection refused (${e.message})`;
  if (e?.code === 'ENOTFOUND' || e?.code === 'EAI_AGAIN') return `host not found (${e.message})`;
  if (e?.code === 'ECONNRESET') return `connection reset (${e.message})`;
  return e?.message ?? String(err);
}

/** POSTs the body; resolves with the outcome, never rejects. A 2xx answer is a success. */
export function postWebhook(request: DeliveryRequest): Promise<DeliveryOutcome> {
  const started = performance.now();
  const elapsed = () => Math.max(0, Math.round(performance.now() - started));
  const refusal = deliveryRefusal(request.address);
  if (refusal) return Promise.resolve({ ok: false, latencyMs: 0, error: refusal });
  const url = new URL(request.address);
  const secure = url.protocol === 'https:';
  return new Promise<DeliveryOutcome>((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    /** Why we cut the request short ourselves: it wins over the socket error that follows. */
    let cutShort: string | undefined;
    const finish = (outcome: Omit<DeliveryOutcome, 'latencyMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onAbort);
      resolve({ ...outcome, ...(!outcome.ok && cutShort ? { error: cutShort } : {}), latencyMs: elapsed() });
    };
    let req: http.ClientRequest | undefined;
    const cut = (reason: string) => {
      cutShort ??= reason;
      req?.destroy(new Error(reason));
    };
    const onAbort = () => cut('the delivery was interrupted (the worker stopped or lost the job)');
    const options: https.RequestOptions = {
      method: 'POST',
      headers: { 'user-agent': USER_AGENT, ...request.headers, 'content-length': String(Buffer.byteLength(request.body)) },
      lookup: guardedLookup,
      agent: false,
      ...(secure ? { rejectUnauthorized: !request.skipCertVerify } : {}),
    };
    try {
      req = (secure ? https : http).request(url, options, (res) => {
        const status = res.statusCode ?? 0;
        let snippet = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (snippet.length < SNIPPET_CHARS) snippet += chunk.slice(0, SNIPPET_CHARS - snippet.length);
        });
        res.on('end', () => {
          if (status >= 200 && status < 300) finish({ ok: true, statusCode: status });
          else {
            const said = snippet.replace(/\s+/g, ' ').trim();
            const moved = status >= 300 && status < 400 && res.headers.location ? ` (redirects are not followed; Location: ${res.headers.location})` : '';
            finish({ ok: false, statusCode: status, error: `HTTP ${status}${moved}${said ? `: ${said}` : ''}` });
          }
        });
        res.on('error', (err) => finish({ ok: false, statusCode: status, error: describe(err) }));
        res.on('close', () => finish({ ok: false, statusCode: status, error: 'the answer was cut off' }));
      });
    } catch (err) {
      finish({ ok: false, error: describe(err) });
      return;
    }
    timer = setTimeout(() => cut(`no complete answer within ${request.timeoutMs} ms`), request.timeoutMs);
    if (request.signal?.aborted) onAbort();
    else request.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => finish({ ok: false, error: describe(err) }));
    req.end(request.body);
  });
}

/** Counts requests in flight per target address on this node. */
export class TargetLimiter {
  readonly #inFlight = new Map<string, number>();
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = Math.max(1, limit);
  }

  /** A target is its address (normalised): two policies sending to one URL share its slots. */
  static keyOf(address: string): string {
    try {
      return new URL(address).toString();
    } catch {
      return address;
    }
  }

  /** Takes a slot for the target, or returns false when it has `limit` requests in flight. */
  tryAcquire(key: string): boolean {
    const n = this.#inFlight.get(key) ?? 0;
    if (n >= this.#limit) return false;
    this.#inFlight.set(key, n + 1);
    return true;
  }

  release(key: string): void {
    const n = (this.#inFlight.get(key) ?? 1) - 1;
    if (n <= 0) this.#inFlight.delete(key);
    else this.#inFlight.set(key, n);
  }

  inFlight(key: string): number {
    return this.#inFlight.get(key) ?? 0;
  }
}
