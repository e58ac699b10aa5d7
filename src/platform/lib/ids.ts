import { randomUUID } from 'node:crypto';

/** Upload session ids: random UUIDs, never derived from client input. */
export function newUploadId(): string {
  return randomUUID();
}

