import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CompactSign, decodeJwt, decodeProtectedHeader, importPKCS8, SignJWT } from 'jose';
import type { ResourceAccess } from '../../src/iam/scopes.ts';
import { CLOCK_LEEWAY_SECONDS, grant, TokenError, type TokenErrorReason, TokenKeyError, TokenService } from '../../src/iam/tokens.ts';

const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);
const T0S = T0 / 1000;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-tokens-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
function freshKeyFile(): string {
  counter += 1;
  return join(dir, `k${counter}`, 'secret', 'token.pem');
}

/** A service with a clock the test moves by hand. */
function service(keyFile: string, options: { service?: string; issuer?: string; lifetimeSeconds?: number; cacheSize?: number } = {}) {
  const clock = { now: T0 };
  const tokens = new TokenService({ keyFile, now: () => clock.now, ...options });
  return { tokens, clock };
}

async function rejects(promise: Promise<unknown>, reason: TokenErrorReason): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof TokenError, `expected TokenError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    return true;
  });
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

const ACCESS: ResourceAccess[] = [
  { type: 'repository', name: 'library/app', actions: ['pull', 'push'] },
  { type: 'registry', name: 'catalog', actions: ['*'] },
];

describe('TokenService: issue and verify', () => {
  it('round-trips subject and access', async () => {
    const { tokens } = service(freshKeyFile());
    const issued = await tokens.issue('alice', ACCESS);
    const verified = await tokens.verify(issued.token);
    assert.equal(verified.subject, 'alice');
    assert.deepEqual(verified.access, ACCESS);
    assert.equal(verified.issuedAt, T0S);
    assert.equal(verified.expiresAt, T0S + 1800);
  });

  it('issues an anonymous token with an empty subject and no access', async () => {
    const { tokens } = service(freshKeyFile());
    const verified = await tokens.verify((await tokens.issue('', [])).token);
    assert.equal(verified.subject, '');
    assert.deepEqual(verified.access, []);
  });

  it('puts every claim and header field in place, and answers in the token endpoint shape', async () => {
    const { tokens } = service(freshKeyFile());
    const issued = await tokens.issue('alice', ACCESS);
    assert.equal(issued.access_token, issued.token);
    assert.equal(issued.expires_in, 1800);
    assert.equal(issued.issued_at, '2025-01-01T12:00:00Z');

    const header = decodeProtectedHeader(issued.token);
    assert.equal(header.alg, 'ES256');
    assert.equal(header.typ, 'JWT');
    assert.equal(header.kid, await tokens.keyId());

    const claims = decodeJwt(issued.token);
    assert.equal(claims.iss, 'berth-token-issuer');
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.aud, 'berth');
    assert.equal(claims.iat, T0S);
    assert.equal(claims.nbf, T0S);
    assert.equal(claims.exp, T0S + 1800);
    assert.equal(typeof claims.jti, 'string');
    assert.ok((claims.jti as string).length >= 16);
    assert.deepEqual(claims['access'], ACCESS);

    const again = decodeJwt((await tokens.issue('alice', ACCESS)).token);
    assert.notEqual(again.jti, claims.jti, 'jti is random per token');
  });

  it('honours service, issuer and lifetime options', async () => {
    const { tokens } = service(freshKeyFile(), { service: 'harbor-registry', issuer: 'harbor-token-issuer', lifetimeSeconds: 300 });
    const issued = await tokens.issue('bob', []);
    assert.equal(issued.expires_in, 300);
    const claims = decodeJwt(issued.token);
    assert.equal(claims.aud, 'harbor-registry');
    assert.equal(claims.iss, 'harbor-token-issuer');
    assert.equal(claims.exp, T0S + 300);
    assert.equal((await tokens.verify(issued.token)).subject, 'bob');
  });

  it('refuses a lifetime that is not a positive whole number', () => {
    for (const lifetimeSeconds of [0, -5, 1.5, Number.NaN]) {
      assert.throws(() => new TokenService({ keyFile: freshKeyFile(), lifetimeSeconds }), RangeError);
    }
  });

  it('publishes the public key as a JWK with its kid and no private part', async () => {
    const { tokens } = service(freshKeyFile());
    const jwk = await tokens.publicJwk();
    assert.equal(jwk.kty, 'EC');
    assert.equal(jwk.crv, 'P-256');
    assert.equal(jwk.kid, await tokens.keyId());
    assert.equal(jwk.d, undefined);
  });
});

describe('TokenService: the signing key file', () => {
  it('creates the key (and its folder) with mode 0600 on first use', async () => {
    const keyFile = freshKeyFile();
    const { tokens } = service(keyFile);
    await tokens.issue('alice', []);
    const info = await stat(keyFile);
    assert.equal(info.mode & 0o777, 0o600);
    assert.match(await readFile(keyFile, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  });

  it('keeps the same key, kid and valid tokens across a restart', async () => {
    const keyFile = freshKeyFile();
    const first = service(keyFile).tokens;
    const issued = await first.issue('alice', ACCESS);
    const pem = await readFile(keyFile, 'utf8');

    const second = service(keyFile).tokens;
    assert.equal(await second.keyId(), await first.keyId());
    assert.deepEqual((await second.verify(issued.token)).access, ACCESS);
    assert.equal(await readFile(keyFile, 'utf8'), pem, 'the key file was not rewritten');
  });

  it('gives different keys different kids', async () => {
    assert.notEqual(await service(freshKeyFile()).tokens.keyId(), await service(freshKeyFile()).tokens.keyId());
  });

  it('two services racing to create the key end up with one key', async () => {
    const keyFile = freshKeyFile();
    const a = service(keyFile).tokens;
    const b = service(keyFile).tokens;
    const [kidA, kidB] = await Promise.all([a.keyId(), b.keyId()]);
    assert.equal(kidA, kidB);
    assert.equal((await b.verify((await a.issue('alice', [])).token)).subject, 'alice');
  });

  it('reports a corrupt key file and leaves it alone', async () => {
    const keyFile = join(dir, 'corrupt.pem');
    await writeFile(keyFile, '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n');
    const { tokens } = service(keyFile);
    for (const attempt of [() => tokens.issue('alice', []), () => tokens.verify('a.b.c'), () => tokens.keyId()]) {
      await assert.rejects(attempt(), (err: unknown) => {
        assert.ok(err instanceof TokenKeyError, `expected TokenKeyError, got ${String(err)}`);
        assert.equal(err.keyFile, keyFile);
        assert.match(err.message, /corrupt/);
        return true;
      });
    }
    assert.equal(await readFile(keyFile, 'utf8'), '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n');
  });

  it('recovers once a broken key file is repaired, without a new service', async () => {
    const good = freshKeyFile();
    const kid = await service(good).tokens.keyId();
    const keyFile = join(dir, 'repaired.pem');
    await writeFile(keyFile, 'garbage');
    const { tokens } = service(keyFile);
    await assert.rejects(tokens.keyId(), TokenKeyError);
    await writeFile(keyFile, await readFile(good));
    assert.equal(await tokens.keyId(), kid);
  });

  it('refuses a key that is not EC P-256', async () => {
    const rsa = join(dir, 'rsa.pem');
    await writeFile(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await assert.rejects(service(rsa).tokens.keyId(), (err: unknown) => err instanceof TokenKeyError && /EC P-256/.test(err.message));

    const p384 = join(dir, 'p384.pem');
    await writeFile(p384, generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await assert.rejects(service(p384).tokens.keyId(), (err: unknown) => err instanceof TokenKeyError && /secp384r1/.test(err.message));
  });

  it('accepts an operator-provided SEC1 ("EC PRIVATE KEY") P-256 key', async () => {
    const keyFile = join(dir, 'sec1.pem');
    const pem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'sec1', format: 'pem' });
    await writeFile(keyFile, pem, { mode: 0o600 });
    const { tokens } = service(keyFile);
    assert.equal((await tokens.verify((await tokens.issue('ops', ACCESS)).token)).subject, 'ops');
  });
});

describe('TokenService: refusals', () => {
  it('accepts a token up to 60 s past exp (leeway) and refuses it after', async () => {
    const keyFile = freshKeyFile();
    const { tokens, clock } = service(keyFile);
    const { token } = await tokens.issue('alice', ACCESS);
    clock.now = (T0S + 1800 + CLOCK_LEEWAY_SECONDS - 1) * 1000;
    assert.equal((await tokens.verify(token)).subject, 'alice');

    // A second service (no cache) checks the same token later.
    const later = service(keyFile);
    later.clock.now = (T0S + 1800 + CLOCK_LEEWAY_SECONDS + 1) * 1000;
    await rejects(later.tokens.verify(token), 'expired');
  });

  it('refuses a cached token once it has expired', async () => {
    const { tokens, clock } = service(freshKeyFile());
    const { token } = await tokens.issue('alice', ACCESS);
    const first = await tokens.verify(token);
    assert.equal(await tokens.verify(token), first, 'the second verification is answered from the cache');
    clock.now = (T0S + 1800 + CLOCK_LEEWAY_SECONDS + 1) * 1000;
    await rejects(tokens.verify(token), 'expired');
    await rejects(tokens.verify(token), 'expired');
  });

  it('refuses a token more than 60 s before nbf and accepts it within the leeway', async () => {
    const keyFile = freshKeyFile();
    const { tokens } = service(keyFile);
    const { token } = await tokens.issue('alice', ACCESS);

    const early = service(keyFile);
    early.clock.now = (T0S - CLOCK_LEEWAY_SECONDS - 1) * 1000;
    await rejects(early.tokens.verify(token), 'not yet valid');

    const slightlyEarly = service(keyFile);
    slightlyEarly.clock.now = (T0S - CLOCK_LEEWAY_SECONDS + 1) * 1000;
    assert.equal((await slightlyEarly.tokens.verify(token)).subject, 'alice');
    // Cached now; a clock that goes back past nbf still refuses it.
    slightlyEarly.clock.now = (T0S - CLOCK_LEEWAY_SECONDS - 1) * 1000;
    await rejects(slightlyEarly.tokens.verify(token), 'not yet valid');
  });

  it('refuses a tampered payload', async () => {
    const { tokens } = service(freshKeyFile());
    const { token } = await tokens.issue('alice', [{ type: 'repository', name: 'library/app', actions: ['pull'] }]);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    claims['access'] = [{ type: 'repository', name: 'library/app', actions: ['pull', 'push', 'delete'] }];
    await rejects(tokens.verify(`${header}.${b64(claims)}.${signature}`), 'bad signature');
    claims['sub'] = 'admin';
    await rejects(tokens.verify(`${header}.${b64(claims)}.${signature}`), 'bad signature');
  });

  it('refuses a tampered signature', async () => {
    const { tokens } = service(freshKeyFile());
    const { token } = await tokens.issue('alice', ACCESS);
    const signature = token.slice(token.lastIndexOf('.') + 1);
    const bytes = Buffer.from(signature, 'base64url');
    bytes[0] = (bytes[0] as number) ^ 0xff;
    await rejects(tokens.verify(`${token.slice(0, token.lastIndexOf('.') + 1)}${bytes.toString('base64url')}`), 'bad signature');
  });

  it('refuses a token signed by another key, even with our kid', async () => {
    const ours = service(freshKeyFile()).tokens;
    const theirKeyFile = freshKeyFile();
    const theirs = service(theirKeyFile).tokens;
    await rejects(ours.verify((await theirs.issue('alice', ACCESS)).token), 'bad signature');

    // Same claims and our kid in the header, signed with the other key.
    const otherKey = await importPKCS8(await readFile(theirKeyFile, 'utf8'), 'ES256');
    const forged = await new SignJWT({ access: ACCESS })
      .setProtectedHeader({ alg: 'ES256', kid: await ours.keyId() })
      .setIssuer('berth-token-issuer')
      .setSubject('alice')
      .setAudience('berth')
      .setIssuedAt(T0S)
      .setExpirationTime(T0S + 600)
      .sign(otherKey);
    await rejects(ours.verify(forged), 'bad signature');
  });

  it('refuses a token for another audience or from another issuer', async () => {
    const keyFile = freshKeyFile();
    const registry = service(keyFile).tokens;
    const otherAudience = service(keyFile, { service: 'other-registry' }).tokens;
    await rejects(registry.verify((await otherAudience.issue('alice', ACCESS)).token), 'wrong audience');
    const otherIssuer = service(keyFile, { issuer: 'someone-else' }).tokens;
    await rejects(registry.verify((await otherIssuer.issue('alice', ACCESS)).token), 'wrong issuer');
  });

  it('refuses alg "none"', async () => {
    const { tokens } = service(freshKeyFile());
    const claims = decodeJwt((await tokens.issue('alice', ACCESS)).token);
    const header = b64({ alg: 'none', typ: 'JWT' });
    await rejects(tokens.verify(`${header}.${b64(claims)}.`), 'unsupported algorithm');
    await rejects(tokens.verify(`${b64({ alg: 'None' })}.${b64(claims)}.`), 'unsupported algorithm');
  });

  it('refuses HS256 tokens keyed with our public key (algorithm confusion)', async () => {
    const keyFile = freshKeyFile();
    const { tokens } = service(keyFile);
    const claims = decodeJwt((await tokens.issue('alice', ACCESS)).token);
    const jwk = await tokens.publicJwk();
    const publicKey = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    const secrets = [
      Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }) as string),
      publicKey.export({ type: 'spki', format: 'der' }),
      Buffer.from(JSON.stringify(jwk)),
    ];
    for (const secret of secrets) {
      const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: jwk.kid as string }).sign(new Uint8Array(secret));
      await rejects(tokens.verify(forged), 'unsupported algorithm');
    }
  });

  it('refuses ES256 tokens from our key that lack exp or iat, or carry a malformed access claim', async () => {
    const keyFile = freshKeyFile();
    const { tokens } = service(keyFile);
    await tokens.keyId();
    const key = await importPKCS8(await readFile(keyFile, 'utf8'), 'ES256');
    const sign = (payload: Record<string, unknown>, expires = true) => {
      const jwt = new SignJWT(payload).setProtectedHeader({ alg: 'ES256' }).setIssuer('berth-token-issuer').setSubject('alice').setAudience('berth').setIssuedAt(T0S);
      if (expires) jwt.setExpirationTime(T0S + 600);
      return jwt.sign(key);
    };
    // The control: a well-formed token signed this way passes.
    assert.equal((await tokens.verify(await sign({ access: ACCESS }))).subject, 'alice');
    await rejects(tokens.verify(await sign({ access: ACCESS }, false)), 'malformed');
    await rejects(
      tokens.verify(await new SignJWT({ access: ACCESS }).setProtectedHeader({ alg: 'ES256' }).setIssuer('berth-token-issuer').setSubject('alice').setAudience('berth').setExpirationTime(T0S + 600).sign(key)),
      'malformed',
    );
    await rejects(tokens.verify(await sign({ access: 'repository:app:pull' })), 'malformed');
    await rejects(tokens.verify(await sign({ access: [{ type: 'repository', name: 'app' }] })), 'malformed');
    await rejects(tokens.verify(await sign({ access: [{ type: 'repository', name: 'app', actions: [1] }] })), 'malformed');
    await rejects(tokens.verify(await sign({ access: [null] })), 'malformed');
  });

  const garbage: Array<[string, string, TokenErrorReason]> = [
    ['empty string', '', 'malformed'],
    ['one word', 'token', 'malformed'],
    ['two parts', 'abc.def', 'malformed'],
    ['three junk parts', 'a.b.c', 'malformed'],
    ['dots only', '..', 'malformed'],
    ['four parts', 'a.b.c.d', 'malformed'],
    ['a header that is not JSON', `${Buffer.from('nope').toString('base64url')}.${b64({ sub: 'x' })}.sig`, 'malformed'],
    ['oversized', `${'a'.repeat(20_000)}.b.c`, 'malformed'],
    // The signature is checked before the payload is read: junk signed by nobody is a bad signature.
    ['a payload that is not JSON, unsigned', `${b64({ alg: 'ES256' })}.${Buffer.from('nope').toString('base64url')}.sig`, 'bad signature'],
  ];
  for (const [title, token, reason] of garbage) {
    it(`refuses a malformed token: ${title}`, async () => {
      const { tokens } = service(freshKeyFile());
      await rejects(tokens.verify(token), reason);
    });
  }

  it('refuses a payload that is not a JSON object even when our key signed it', async () => {
    const keyFile = freshKeyFile();
    const { tokens } = service(keyFile);
    await tokens.keyId();
    const key = await importPKCS8(await readFile(keyFile, 'utf8'), 'ES256');
    for (const payload of ['nope', '[1,2]', '"string"']) {
      const token = await new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader({ alg: 'ES256' }).sign(key);
      await rejects(tokens.verify(token), 'malformed');
    }
  });

  it('forgets the oldest verification when the cache is full', async () => {
    const { tokens } = service(freshKeyFile(), { cacheSize: 2 });
    const a = (await tokens.issue('a', [])).token;
    const b = (await tokens.issue('b', [])).token;
    const c = (await tokens.issue('c', [])).token;
    const first = await tokens.verify(a);
    assert.equal(await tokens.verify(a), first);
    await tokens.verify(b);
    await tokens.verify(c);
    const again = await tokens.verify(a);
    assert.notEqual(again, first, 'evicted, so verified afresh');
    assert.deepEqual(again, first);
  });
});

describe('grant', () => {
  const requested: ResourceAccess[] = [
    { type: 'repository', name: 'library/app', actions: ['pull', 'push'] },
    { type: 'repository', name: 'private/app', actions: ['pull'] },
    { type: 'repository', name: 'missing/app', actions: ['pull', 'push', 'delete'] },
    { type: 'registry', name: 'catalog', actions: ['*'] },
  ];
  const cases: Array<[string, (type: string, name: string, action: string) => boolean, ResourceAccess[]]> = [
    ['nothing allowed', () => false, []],
    ['everything allowed', () => true, requested],
    [
      'a developer of library, nothing elsewhere (unknown project: no actions, no error)',
      (type, name, action) => type === 'repository' && name.startsWith('library/') && action !== 'delete',
      [{ type: 'repository', name: 'library/app', actions: ['pull', 'push'] }],
    ],
    [
      'a guest of library on a public project: pull only',
      (type, name, action) => type === 'repository' && name.startsWith('library/') && action === 'pull',
      [{ type: 'repository', name: 'library/app', actions: ['pull'] }],
    ],
    [
      'a system admin',
      (type, name) => type === 'registry' || !name.startsWith('missing/'),
      [
        { type: 'repository', name: 'library/app', actions: ['pull', 'push'] },
        { type: 'repository', name: 'private/app', actions: ['pull'] },
        { type: 'registry', name: 'catalog', actions: ['*'] },
      ],
    ],
  ];
  for (const [title, mayDo, expected] of cases) {
    it(title, () => {
      assert.deepEqual(grant(requested, mayDo), expected);
    });
  }

  it('asks about each requested action once and never about unrequested ones', () => {
    const asked: string[] = [];
    grant([{ type: 'repository', name: 'a', actions: ['pull', 'pull', 'push'] }], (type, name, action) => {
      asked.push(`${type}:${name}:${action}`);
      return true;
    });
    assert.deepEqual(asked, ['repository:a:pull', 'repository:a:push']);
  });

  it('grants nothing for nothing requested', () => {
    assert.deepEqual(grant([], () => true), []);
  });
});
