import type { ServerResponse } from 'node:http';
import type { PositionalReader } from '../storage/blob-store.ts';

const CHUNK = 1 << 20;
const BUFFERS = 4;

/**
 * Writes bytes start..end (inclusive) of `reader` to `res`, through a few reused buffers: a buffer
 * goes back to the pool only when the socket has taken its bytes (the write callback), so no chunk
 * is allocated per read and the garbage collector stays out of large downloads. Resolves when the
 * response ended or the client went away; never throws for a client that hung up.
 */
export async function sendPositional(reader: PositionalReader, start: number, end: number, res: ServerResponse): Promise<void> {
  const free: Buffer[] = Array.from({ length: BUFFERS }, () => Buffer.allocUnsafeSlow(CHUNK));
  const waiting: Array<() => void> = [];
  const wake = () => {
    for (const resume of waiting.splice(0)) resume();
  };
  res.once('close', wake);
  const release = (buffer: Buffer) => {
    free.push(buffer);
    wake();
  };
  try {
    let position = start;
    while (position <= end && !res.destroyed) {
      if (free.length === 0) {
        await new Promise<void>((resume) => waiting.push(resume));
        continue;
      }
      const buffer = free.pop() as Buffer;
      const bytes = await reader.read(buffer, Math.min(CHUNK, end - position + 1), position);
      if (bytes === 0) throw new Error(`blob ended at ${position}, before byte ${end}`);
      position += bytes;
      if (res.destroyed) break;
      const flowing = res.write(buffer.subarray(0, bytes), () => release(buffer));
      if (!flowing && !res.destroyed) {
        await new Promise<void>((resume) => {
          waiting.push(resume);
          res.once('drain', wake);
        });
      }
    }
    if (!res.destroyed) await new Promise<void>((resume) => res.end(resume));
  } catch (err) {
    // Headers are gone already: the only honest signal left is to cut the connection.
    res.destroy(err as Error);
  } finally {
    res.off('close', wake);
    await reader.close();
  }
}
