/**
 * The policies' signing secrets at rest. A secret must be readable again to sign each delivery,
 * so it cannot be hashed: it is sealed with AES-256-GCM under a key kept in a file of the data
 * folder (<dataDir>/secret/webhook.key by default, mode 0600, created on first start like the
 * token key). A database dump alone then does not reveal the secrets. The API never returns one.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

const VERSION = 'v1';
const KEY_BYTES = 32;

export class SecretKeyError extends Error {
  readonly keyFile: string;
  constructor(keyFile: string, reason: string, options?: { cause?: unknown }) {
    super(`webhook secret key ${keyFile}: ${reason}`, options);
    this.name = 'SecretKeyError';
    this.keyFile = keyFile;
  }
}

export class SecretBox {
  readonly #keyFile: string;
  #key: Buffer | undefined;

  constructor(keyFile: string) {
    this.#keyFile = keyFile;
  }

  /** Loads the key, creating the file when it is missing; a bad file is an error now, not at the first delivery. */
  async init(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.#keyFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new SecretKeyError(this.#keyFile, `cannot read: ${(err as Error).message}`, { cause: err });
      text = await this.#create();
    }
    const key = Buffer.from(text.trim(), 'base64');
    if (key.length !== KEY_BYTES || key.toString('base64') !== text.trim()) {
      throw new SecretKeyError(this.#keyFile, `expected ${KEY_BYTES} bytes in base64 (the file is corrupt: restore it, or remove it and set the policies' secrets again)`);
    }
    this.#key = key;
  }

  /** Publishes a new key whole or not at all; if another process created one first, that one wins. */
  async #create(): Promise<string> {
    const text = `${randomBytes(KEY_BYTES).toString('base64')}\n`;
    await mkdir(dirname(this.#keyFile), { recursive: true, mode: 0o700 });
    const temporary = `${this.#keyFile}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(temporary, text, { mode: 0o600, flag: 'wx' });
    try {
      await chmod(temporary, 0o600);
      await link(temporary, this.#keyFile);
      return text;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFile(this.#keyFile, 'utf8');
      throw new SecretKeyError(this.#keyFile, `cannot write: ${(err as Error).message}`, { cause: err });
    } finally {
      await unlink(temporary).catch(() => undefined);
    }
  }

  #keyOrThrow(): Buffer {
    if (!this.#key) throw new Error('SecretBox.init() was not called');
    return this.#key;
  }

  /** `v1:<iv>:<tag>:<ciphertext>` (base64url parts). */
  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#keyOrThrow(), iv);
    const sealed = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return [VERSION, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), sealed.toString('base64url')].join(':');
  }

  /** The secret, or a SecretKeyError when it was sealed under another key (or altered). */
  open(sealed: string): string {
    const [version, iv, tag, data] = sealed.split(':');
    if (version !== VERSION || iv === undefined || tag === undefined || data === undefined) throw new SecretKeyError(this.#keyFile, 'a stored secret is not in a known format');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#keyOrThrow(), Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
    } catch (err) {
      throw new SecretKeyError(this.#keyFile, 'cannot decrypt the policy secret: it was sealed under another key (nodes must share webhooks.secretKeyFile); set the secret again', { cause: err });
    }
  }
}
