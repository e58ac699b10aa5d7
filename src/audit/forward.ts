/**
 * Forwards each written audit entry to a syslog receiver: RFC 5424 messages (facility 13, "log
 * audit"; severity informational, notice for failures; APP-NAME berth, MSGID audit) whose body is
 * the entry as JSON, over UDP (one datagram each) or TCP (octet-counting framing, RFC 6587). The
 * queue is bounded and filled synchronously, so a slow or dead receiver never holds up a request:
 * sending is retried with backoff, a message that failed `maxAttempts` times or that finds the
 * queue full is dropped and counted.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { hostname } from 'node:os';
import type { AuditEntry } from './entry.ts';

export interface SyslogTarget {
  readonly protocol: 'udp' | 'tcp';
  readonly host: string;
  readonly port: number;
}

/** udp://host:port or tcp://host:port (IPv6 in brackets); undefined for '' (no forwarding); throws on anything else. */
export function parseSyslogTarget(text: string): SyslogTarget | undefined {
  if (text.trim() === '') return undefined;
  const match = /^(udp|tcp):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})\/?$/.exec(text.trim());
  const port = match ? Number(match[3]) : 0;
  if (!match || port < 1 || port > 65535) throw new Error(`expected udp://HOST:PORT or tcp://HOST:PORT, got ${JSON.stringify(text)}`);
  return { protocol: match[1] as 'udp' | 'tcp', host: (match[2] as string).replace(/^\[|\]$/g, ''), port };
}

/** The JSON an entry is forwarded (and exported) as. */
export function entryJson(entry: AuditEntry): Record<string, unknown> {
  return {
    id: entry.id,
    op_time: new Date(entry.at).toISOString(),
    username: entry.principal,
    principal_kind: entry.principalKind,
    operation: entry.operation,
    resource_type: entry.resourceType,
    resource: entry.resource,
    project: entry.project,
    result: entry.result,
    reason: entry.reason,
    status: entry.status,
    client_address: entry.clientAddress,
    user_agent: entry.userAgent,
    request_id: entry.requestId,
    description: entry.description,
    hash: entry.hash,
  };
}

/** PRINTUSASCII without spaces, as RFC 5424 header fields must be. */
function headerField(text: string, max: number): string {
  const clean = text.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return clean === '' ? '-' : clean;
}

/** One RFC 5424 message for an entry. */
export function syslogMessage(entry: AuditEntry, host = hostname(), pid = process.pid): string {
  const facility = 13;
  const severity = entry.result === 'failure' ? 5 : 6;
  return `<${facility * 8 + severity}>1 ${new Date(entry.at).toISOString()} ${headerField(host, 255)} berth ${pid} audit - ${JSON.stringify(entryJson(entry))}`;
}

export interface ForwarderCounters {
  forwarded(count: number): void;
  dropped(count: number, why: 'queue-full' | 'send-failed'): void;
}

export interface ForwarderLogger {
  warn(object: object, message: string): void;
}

export interface SyslogForwarderOptions {
  readonly target: SyslogTarget;
  /** Messages waiting at most; more are dropped. */
  readonly maxQueue: number;
  /** Tries per message before it is dropped. */
  readonly maxAttempts?: number;
  readonly counters?: ForwarderCounters;
  readonly log?: ForwarderLogger;
  readonly hostname?: string;
  /** First retry delay; doubles up to maxBackoffMs. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
}

interface Pending {
  readonly bytes: Buffer;
  attempts: number;
}

/** Messages per TCP write. */
const TCP_BATCH = 200;

export class SyslogForwarder {
  readonly #options: SyslogForwarderOptions;
  readonly #host: string;
  #queue: Pending[] = [];
  #sending = false;
  #failures = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #tcp: net.Socket | undefined;
  #tcpReady: Promise<net.Socket> | undefined;
  #udp: dgram.Socket | undefined;
  #stopped = false;
  #lastWarning = 0;

  constructor(options: SyslogForwarderOptions) {
    this.#options = options;
    this.#host = options.hostname ?? hostname();
  }

  get pending(): number {
    return this.#queue.length;
  }

  /** Queues the entries' messages (synchronous; drops what does not fit) and starts sending. */
  enqueue(entries: readonly AuditEntry[]): void {
    if (this.#stopped) return;
    let dropped = 0;
    for (const entry of entries) {
      if (this.#queue.length >= this.#options.maxQueue) {
        dropped++;
        continue;
      }
      const text = syslogMessage(entry, this.#host);
      const body = Buffer.from(text, 'utf8');
      this.#queue.push({ bytes: this.#options.target.protocol === 'tcp' ? Buffer.concat([Buffer.from(`${body.length} `), body]) : body, attempts: 0 });
    }
    if (dropped > 0) {
      this.#options.counters?.dropped(dropped, 'queue-full');
      this.#warn({ dropped }, 'the syslog queue is full; audit entries are not forwarded');
    }
    this.#pump();
  }

  #warn(object: object, message: string): void {
    const now = Date.now();
    if (now - this.#lastWarning < 10_000) return;
    this.#lastWarning = now;
    this.#options.log?.warn({ component: 'audit', target: `${this.#options.target.protocol}://${this.#options.target.host}:${this.#options.target.port}`, ...object }, message);
  }

  #pump(): void {
    if (this.#sending || this.#retryTimer !== undefined || this.#queue.length === 0) return;
    this.#sending = true;
    void this.#sendAll()
      .catch((err: unknown) => {
        this.#failures++;
        let dropped = 0;
        const max = this.#options.maxAttempts ?? 5;
        // The message at the front is the one that failed; the ones after it were not tried.
        const head = this.#queue[0];
        if (head) {
          head.attempts++;
          if (head.attempts >= max) {
            this.#queue.shift();
            dropped++;
          }
        }
        if (dropped > 0) this.#options.counters?.dropped(dropped, 'send-failed');
        this.#warn({ err: (err as Error).message, pending: this.#queue.length }, 'could not forward audit entries to syslog; retrying');
        const base = this.#options.backoffMs ?? 100;
        const delay = Math.min(this.#options.maxBackoffMs ?? 5000, base * 2 ** Math.min(this.#failures - 1, 10));
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = undefined;
          this.#pump();
        }, delay);
        this.#retryTimer.unref();
      })
      .finally(() => {
        this.#sending = false;
        if (this.#retryTimer === undefined && this.#queue.length > 0) this.#pump();
      });
  }

  async #sendAll(): Promise<void> {
    while (this.#queue.length > 0) {
      if (this.#options.target.protocol === 'udp') {
        const head = this.#queue[0] as Pending;
        await this.#sendUdp(head.bytes);
        this.#queue.shift();
        this.#sent(1);
      } else {
        const batch = this.#queue.slice(0, TCP_BATCH);
        const socket = await this.#connectTcp();
        await new Promise<void>((resolve, reject) => {
          socket.write(
            batch.length === 1 ? (batch[0] as Pending).bytes : Buffer.concat(batch.map((p) => p.bytes)),
            (err) => (err ? reject(err) : resolve()),
          );
        });
        this.#queue.splice(0, batch.length);
        this.#sent(batch.length);
      }
    }
  }

  #sent(count: number): void {
    this.#failures = 0;
    this.#options.counters?.forwarded(count);
  }

  #sendUdp(bytes: Buffer): Promise<void> {
    if (this.#udp === undefined) {
      const socket = dgram.createSocket(net.isIPv6(this.#options.target.host) ? 'udp6' : 'udp4');
      socket.on('error', () => {
        socket.close();
        if (this.#udp === socket) this.#udp = undefined;
      });
      socket.unref();
      this.#udp = socket;
    }
    const socket = this.#udp;
    return new Promise((resolve, reject) => socket.send(bytes, this.#options.target.port, this.#options.target.host, (err) => (err ? reject(err) : resolve())));
  }

  #connectTcp(): Promise<net.Socket> {
    if (this.#tcp !== undefined && !this.#tcp.destroyed && this.#tcp.writable) return Promise.resolve(this.#tcp);
    this.#tcpReady ??= new Promise<net.Socket>((resolve, reject) => {
      const socket = net.createConnection({ host: this.#options.target.host, port: this.#options.target.port });
      socket.setNoDelay(true);
      socket.setTimeout(5000, () => socket.destroy(new Error('connecting to the syslog receiver timed out')));
      socket.once('connect', () => {
        socket.setTimeout(0);
        socket.unref();
        this.#tcp = socket;
        resolve(socket);
      });
      socket.on('error', (err) => {
        if (this.#tcp === socket) this.#tcp = undefined;
        reject(err);
      });
      socket.on('close', () => {
        if (this.#tcp === socket) this.#tcp = undefined;
        reject(new Error('the syslog receiver closed the connection'));
      });
      // The receiver sends nothing back; reading keeps the socket's end noticed.
      socket.resume();
    }).finally(() => {
      this.#tcpReady = undefined;
    });
    return this.#tcpReady;
  }

  /** Sends what is queued for up to `timeoutMs`, then closes the sockets; what is left is counted as dropped. */
  async stop(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length > 0 && Date.now() < deadline) {
      if (this.#retryTimer !== undefined) {
        clearTimeout(this.#retryTimer);
        this.#retryTimer = undefined;
      }
      this.#pump();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#queue.length > 0) {
      this.#options.counters?.dropped(this.#queue.length, 'send-failed');
      this.#queue = [];
    }
    const tcp = this.#tcp;
    this.#tcp = undefined;
    if (tcp && !tcp.destroyed) {
      await Promise.race([new Promise<void>((resolve) => tcp.end(() => resolve())), new Promise((resolve) => setTimeout(resolve, 500).unref())]);
      tcp.destroy();
    }
    this.#udp?.close();
    this.#udp = undefined;
  }
}
