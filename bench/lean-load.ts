/**
 * A closed loop of the same GET over raw keep-alive sockets, for benches where the load
 * generator's own CPU would distort the result. node:http costs the client several times what a
 * small manifest GET costs the server; on a machine with two cores that client shares a core with
 * the server's helper threads (V8's, libuv's, the audit writer), and whatever those take then
 * lowers the measured rate twice: in the client, and in the server, which gets fewer requests at
 * once and batches less per event-loop turn. This client builds the request once, parses only the
 * status line and Content-Length, and keeps one request in flight per connection (no pipelining),
 * as a real client does. It is the role wrk or h2load play elsewhere, without a package to install.
 */
import net from 'node:net';

export interface LeanLoadOptions {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Connections, each with one request at a time. */
  readonly concurrency: number;
  readonly maxMs: number;
  /** Status every reply must have; any other counts as an error. */
  readonly expectStatus: number;
}

export interface LeanLoadResult {
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly elapsedMs: number;
  readonly latenciesMs: number[];
}

const HEAD_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;

/** Runs the loop for maxMs; connections are opened before the clock starts and closed after. */
export async function runLeanLoad(options: LeanLoadOptions): Promise<LeanLoadResult> {
  const lines = [`GET ${options.path} HTTP/1.1`, `host: ${options.host}:${options.port}`, 'connection: keep-alive'];
  for (const [name, value] of Object.entries(options.headers ?? {})) lines.push(`${name}: ${value}`);
  const request = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');

  const sockets = await Promise.all(
    Array.from({ length: options.concurrency }, () => new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect({ host: options.host, port: options.port, noDelay: true }, () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    })),
  );

  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const fail = (message: string) => {
    errors++;
    firstError ??= message;
  };
  const started = performance.now();
  const deadline = started + options.maxMs;

  const loops = sockets.map((socket) => new Promise<void>((resolve) => {
    let pending: Buffer | undefined;
    let sentAt = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      socket.removeAllListeners('data');
      resolve();
    };
    const send = () => {
      if (performance.now() >= deadline) {
        finish();
        return;
      }
      sentAt = performance.now();
      socket.write(request);
    };
    socket.on('data', (chunk: Buffer) => {
      const data: Buffer = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      const headEnd = data.indexOf(HEAD_END);
      if (headEnd < 0) {
        pending = data;
        return;
      }
      const head = data.toString('latin1', 0, headEnd);
      const length = CONTENT_LENGTH.exec(head);
      if (length === null) {
        // Every reply the benches ask for has a length; anything else (chunked) is not this client's job.
        fail(`reply without content-length: ${head.split('\r\n', 1)[0]}`);
        finish();
        return;
      }
      const total = headEnd + HEAD_END.length + Number(length[1]);
      if (data.length < total) {
        pending = data;
        return;
      }
      pending = undefined;
      if (data.length > total) {
        fail('more bytes than one reply');
        finish();
        return;
      }
      const status = Number(head.slice(9, 12));
      if (status === options.expectStatus) latencies.push(performance.now() - sentAt);
      else fail(`status ${status}`);
      send();
    });
    socket.once('error', (err) => {
      fail(err.message);
      finish();
    });
    socket.once('close', finish);
    send();
  }));
  await Promise.all(loops);
  const elapsedMs = performance.now() - started;
  for (const socket of sockets) socket.destroy();
  return { ops: latencies.length, errors, firstError, elapsedMs, latenciesMs: latencies };
}
