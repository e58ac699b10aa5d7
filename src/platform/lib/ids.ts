import { randomUUID } from 'node:crypto';

/** Upload session ids: random UUIDs, never derived from client input. */
export function newUploadId(): string {
  return randomUUID();
}

export function isUploadId(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value);
}
