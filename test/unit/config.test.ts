import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { configOverrides, parseFlags } from '../../src/cli/flags.ts';
import { ConfigError, envName, listKeys, loadConfig, parseAddr, resolveDataPath } from '../../src/config/load.ts';
import { CONFIG_SCHEMA, isLeaf, type Section } from '../../src/config/schema.ts';

const EXAMPLE = path.resolve(import.meta.dirname, '../../config/example.yaml');
const scratch = mkdtempSync(path.join(tmpdir(), 'berth-config-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

let fileCount = 0;
/** Writes YAML text to a fresh file in the scratch folder. */
function yamlFile(text: string): string {
  const file = path.join(scratch, `config-${++fileCount}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** Asserts that `fn` throws a ConfigError for `key`, and that its message says `says`. */
function assertConfigError(fn: () => unknown, key: string, says?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.key, key);
    assert.ok(err.message.startsWith(`${key}: `), err.message);
    if (says) assert.match(err.message, says);
    return true;
  });
}

function get(config: unknown, keyPath: readonly string[]): unknown {
  return keyPath.reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], config);
}

describe('config defaults', () => {
  it('every key has its schema default when nothing is given', () => {
    const config = loadConfig({ env: {} });
    for (const { path: keyPath, leaf } of listKeys()) assert.deepEqual(get(config, keyPath), leaf.default, keyPath.join('.'));
  });

  it('has the documented defaults', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.dataDir, './data');
    assert.equal(config.server.addr, '0.0.0.0:5000');
    assert.equal(config.database.url, '');
    assert.equal(config.storage.driver, 'filesystem');
    assert.equal(config.registry.manifestMaxBytes, 4 * 1024 * 1024);
    assert.equal(config.registry.validateReferences, true);
    assert.equal(config.uploads.maxBlobBytes, 0);
    assert.equal(config.log.level, 'info');
    assert.equal(config.metrics.enabled, true);
  });

  it('is frozen all the way down', () => {
    const config = loadConfig({ env: {} });
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.server));
    assert.throws(() => {
      (config.server as { addr: string }).addr = 'x';
    }, TypeError);
  });

  it('does not share state between loads', () => {
    const a = loadConfig({ env: {}, overrides: { server: { addr: '127.0.0.1:1' } } });
    const b = loadConfig({ env: {} });
    assert.equal(a.server.addr, '127.0.0.1:1');
    assert.equal(b.server.addr, '0.0.0.0:5000');
  });

  it('every schema key has a non-empty doc line', () => {
    for (const { path: keyPath, leaf } of listKeys()) assert.ok(leaf.doc.trim().length > 10, keyPath.join('.'));
  });
});

describe('config file overlay', () => {
  it('overlays the keys it sets and keeps the other defaults', () => {
    const file = yamlFile(`
server:
  addr: "127.0.0.1:8080"
registry:
  manifestMaxBytes: 2048
  validateReferences: false
log:
  level: debug
`);
    const config = loadConfig({ file, env: {} });
    assert.equal(config.server.addr, '127.0.0.1:8080');
    assert.equal(config.registry.manifestMaxBytes, 2048);
    assert.equal(config.registry.validateReferences, false);
    assert.equal(config.log.level, 'debug');
    assert.equal(config.server.maxHeaderBytes, 16384);
    assert.equal(config.registry.tagsPageMax, 1000);
  });

  it('an empty file or a file of comments means the defaults', () => {
    assert.deepEqual(loadConfig({ file: yamlFile(''), env: {} }), loadConfig({ env: {} }));
    assert.deepEqual(loadConfig({ file: yamlFile('# nothing here\n'), env: {} }), loadConfig({ env: {} }));
  });

  it('a missing file is a ConfigError naming the file', () => {
    const file = path.join(scratch, 'does-not-exist.yaml');
    assertConfigError(() => loadConfig({ file, env: {} }), file, /cannot read config file \(ENOENT\)/);
  });

  it('invalid YAML is a ConfigError naming the file and the line', () => {
    const file = yamlFile('server:\n  addr: [unclosed\n');
    assertConfigError(() => loadConfig({ file, env: {} }), file, /invalid YAML: .*line/);
  });

  it('a file whose root is not a mapping is refused', () => {
    assertConfigError(() => loadConfig({ file: yamlFile('- a\n- b\n'), env: {} }), '(root)', /expected a mapping/);
    assertConfigError(() => loadConfig({ file: yamlFile('just text\n'), env: {} }), '(root)', /expected a mapping/);
  });
});

describe('BERTH_* environment overlay', () => {
  it('names each variable after its dotted key', () => {
    const cases: Array<[string[], string]> = [
      [['dataDir'], 'BERTH_DATA_DIR'],
      [['server', 'addr'], 'BERTH_SERVER_ADDR'],
      [['server', 'externalUrl'], 'BERTH_SERVER_EXTERNAL_URL'],
      [['registry', 'manifestMaxBytes'], 'BERTH_REGISTRY_MANIFEST_MAX_BYTES'],
      [['uploads', 'maxBlobBytes'], 'BERTH_UPLOADS_MAX_BLOB_BYTES'],
      [['metrics', 'enabled'], 'BERTH_METRICS_ENABLED'],
    ];
    for (const [keyPath, name] of cases) assert.equal(envName(keyPath), name);
  });

  it('no two keys share a variable name', () => {
    const names = listKeys().map((k) => envName(k.path));
    assert.equal(new Set(names).size, names.length);
  });

  it('reads text and coerces it to integers and booleans', () => {
    const config = loadConfig({
      env: {
        BERTH_SERVER_ADDR: '127.0.0.1:7000',
        BERTH_REGISTRY_MANIFEST_MAX_BYTES: '8192',
        BERTH_UPLOADS_MAX_BLOB_BYTES: '1048576',
        BERTH_DATA_DIR: '/var/lib/berth',
        BERTH_REGISTRY_VALIDATE_REFERENCES: 'false',
        BERTH_METRICS_ENABLED: 'true',
        BERTH_LOG_LEVEL: 'warn',
      },
    });
    assert.equal(config.server.addr, '127.0.0.1:7000');
    assert.equal(config.registry.manifestMaxBytes, 8192);
    assert.equal(config.uploads.maxBlobBytes, 1048576);
    assert.equal(config.dataDir, '/var/lib/berth');
    assert.equal(config.registry.validateReferences, false);
    assert.equal(config.metrics.enabled, true);
    assert.equal(config.log.level, 'warn');
  });

  it('beats the file', () => {
    const file = yamlFile('server:\n  addr: "127.0.0.1:1"\nregistry:\n  manifestMaxBytes: 2048\n');
    const config = loadConfig({ file, env: { BERTH_SERVER_ADDR: '127.0.0.1:2' } });
    assert.equal(config.server.addr, '127.0.0.1:2');
    assert.equal(config.registry.manifestMaxBytes, 2048);
  });

  it('ignores variables that are not config keys', () => {
    const config = loadConfig({ env: { BERTH_TEST_POSTGRES_URL: 'postgres://x', BERTH_NOPE: '1', PATH: '/bin' } });
    assert.deepEqual(config, loadConfig({ env: {} }));
  });

  const bad: Array<[string, string, string, RegExp]> = [
    ['BERTH_REGISTRY_MANIFEST_MAX_BYTES', '4MiB', 'registry.manifestMaxBytes', /expected an integer, got "4MiB"/],
    ['BERTH_REGISTRY_MANIFEST_MAX_BYTES', '1.5', 'registry.manifestMaxBytes', /expected an integer/],
    ['BERTH_REGISTRY_MANIFEST_MAX_BYTES', '', 'registry.manifestMaxBytes', /expected an integer/],
    ['BERTH_UPLOADS_MAX_BLOB_BYTES', ' 5', 'uploads.maxBlobBytes', /expected an integer/],
    ['BERTH_UPLOADS_MAX_BLOB_BYTES', '-1', 'uploads.maxBlobBytes', /between 0 and/],
    ['BERTH_UPLOADS_MAX_BLOB_BYTES', '99999999999999999999', 'uploads.maxBlobBytes', /expected an integer/],
    ['BERTH_REGISTRY_VALIDATE_REFERENCES', 'yes', 'registry.validateReferences', /expected true or false, got "yes"/],
    ['BERTH_METRICS_ENABLED', '1', 'metrics.enabled', /expected true or false/],
    ['BERTH_LOG_LEVEL', 'loud', 'log.level', /must be one of fatal, error, warn, info, debug, trace, silent/],
    ['BERTH_SERVER_ADDR', 'nowhere', 'server.addr', /expected HOST:PORT/],
    ['BERTH_DATABASE_URL', 'mysql://db/berth', 'database.url', /postgres/],
  ];
  for (const [name, value, key, says] of bad) {
    it(`${name}=${JSON.stringify(value)} is an error naming ${key}`, () => {
      assertConfigError(() => loadConfig({ env: { [name]: value } }), key, says);
    });
  }
});

describe('CLI flag overrides', () => {
  it('map --addr, --data-dir and --database-url onto their keys', () => {
    const flags = parseFlags(['--addr', '127.0.0.1:9', '--data-dir', '/srv/berth', '--database-url', 'postgres://u@h/db', 'extra']);
    assert.deepEqual(flags.positionals, ['extra']);
    assert.deepEqual(configOverrides(flags), { dataDir: '/srv/berth', server: { addr: '127.0.0.1:9' }, database: { url: 'postgres://u@h/db' } });
    assert.deepEqual(configOverrides(parseFlags([])), {});
  });

  it('beat both the environment and the file', () => {
    const file = yamlFile('dataDir: /from/file\nserver:\n  addr: "127.0.0.1:1"\ndatabase:\n  url: postgres://file/db\n');
    const env = { BERTH_DATA_DIR: '/from/env', BERTH_SERVER_ADDR: '127.0.0.1:2', BERTH_DATABASE_URL: 'postgres://env/db' };
    const overrides = configOverrides(parseFlags(['--addr', '127.0.0.1:3', '--data-dir', '/from/flag', '--database-url', 'postgresql://flag/db']));
    const config = loadConfig({ file, env, overrides });
    assert.equal(config.server.addr, '127.0.0.1:3');
    assert.equal(config.dataDir, '/from/flag');
    assert.equal(config.database.url, 'postgresql://flag/db');
  });

  it('leave the keys they do not set to the environment and the file', () => {
    const file = yamlFile('dataDir: /from/file\nserver:\n  addr: "127.0.0.1:1"\n');
    const config = loadConfig({ file, env: { BERTH_SERVER_ADDR: '127.0.0.1:2' }, overrides: configOverrides(parseFlags(['--database-url', 'postgres://flag/db'])) });
    assert.equal(config.dataDir, '/from/file');
    assert.equal(config.server.addr, '127.0.0.1:2');
    assert.equal(config.database.url, 'postgres://flag/db');
  });

  it('are validated like everything else', () => {
    assertConfigError(() => loadConfig({ env: {}, overrides: configOverrides(parseFlags(['--addr', 'bad'])) }), 'server.addr');
  });

  it('refuse an unknown flag', () => {
    assert.throws(() => parseFlags(['--nope']), (err: NodeJS.ErrnoException) => err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION');
  });
});

describe('config validation names the bad key', () => {
  const cases: Array<{ label: string; yaml: string; key: string; says: RegExp }> = [
    { label: 'unknown top-level key', yaml: 'nope: 1\n', key: 'nope', says: /unknown key/ },
    { label: 'unknown nested key', yaml: 'server:\n  adr: "127.0.0.1:1"\n', key: 'server.adr', says: /unknown key/ },
    { label: 'a key in the wrong section', yaml: 'registry:\n  addr: "127.0.0.1:1"\n', key: 'registry.addr', says: /unknown key/ },
    { label: 'a number for a string', yaml: 'server:\n  addr: 5000\n', key: 'server.addr', says: /expected a string, got 5000/ },
    { label: 'null for a string', yaml: 'server:\n  externalUrl:\n', key: 'server.externalUrl', says: /expected a string, got null/ },
    { label: 'text for an integer (files are typed)', yaml: 'registry:\n  manifestMaxBytes: "2048"\n', key: 'registry.manifestMaxBytes', says: /expected an integer/ },
    { label: 'a fraction for an integer', yaml: 'database:\n  poolSize: 2.5\n', key: 'database.poolSize', says: /expected an integer, got 2.5/ },
    { label: 'text for a boolean (files are typed)', yaml: 'metrics:\n  enabled: "false"\n', key: 'metrics.enabled', says: /expected true or false/ },
    { label: 'a mapping for a leaf', yaml: 'log:\n  level:\n    a: 1\n', key: 'log.level', says: /must be one of/ },
    { label: 'a scalar for a section', yaml: 'server: 5\n', key: 'server', says: /expected a mapping/ },
    { label: 'a list for a section', yaml: 'registry:\n  - manifestMaxBytes\n', key: 'registry', says: /expected a mapping/ },
    { label: 'an integer below its minimum', yaml: 'server:\n  maxHeaderBytes: 100\n', key: 'server.maxHeaderBytes', says: /between 1024 and 1048576, got 100/ },
    { label: 'an integer above its maximum', yaml: 'registry:\n  manifestMaxBytes: 999999999\n', key: 'registry.manifestMaxBytes', says: /between 1024 and 67108864/ },
    { label: 'a negative integer', yaml: 'uploads:\n  maxBlobBytes: -1\n', key: 'uploads.maxBlobBytes', says: /between 0 and/ },
    { label: 'expiry below a minute', yaml: 'uploads:\n  expireAfterSeconds: 59\n', key: 'uploads.expireAfterSeconds', says: /between 60 and/ },
    { label: 'a bad log level', yaml: 'log:\n  level: loud\n', key: 'log.level', says: /must be one of .*silent, got "loud"/ },
    { label: 'an unknown storage driver', yaml: 'storage:\n  driver: floppy\n', key: 'storage.driver', says: /must be one of filesystem/ },
    { label: 'server.addr without a port', yaml: 'server:\n  addr: localhost\n', key: 'server.addr', says: /expected HOST:PORT, got "localhost"/ },
    { label: 'server.addr with a port above 65535', yaml: 'server:\n  addr: "0.0.0.0:65536"\n', key: 'server.addr', says: /expected HOST:PORT/ },
    { label: 'server.addr with a named port', yaml: 'server:\n  addr: "localhost:http"\n', key: 'server.addr', says: /expected HOST:PORT/ },
    { label: 'server.addr with an unbracketed IPv6 address', yaml: 'server:\n  addr: "::1:5000"\n', key: 'server.addr', says: /expected HOST:PORT/ },
    { label: 'a MySQL database.url', yaml: 'database:\n  url: mysql://u@h/db\n', key: 'database.url', says: /must be a postgres:\/\/ URL or empty/ },
    { label: 'a SQLite path as database.url', yaml: 'database:\n  url: ./berth.db\n', key: 'database.url', says: /postgres/ },
    { label: 'a bare host as server.externalUrl', yaml: 'server:\n  externalUrl: registry.example.com\n', key: 'server.externalUrl', says: /http/ },
  ];
  for (const { label, yaml, key, says } of cases) {
    it(label, () => assertConfigError(() => loadConfig({ file: yamlFile(yaml), env: {} }), key, says));
  }

  it('accepts the address and URL forms it documents', () => {
    for (const addr of ['127.0.0.1:5000', ':5000', '[::1]:5000', 'localhost:0', 'registry.local:65535']) {
      assert.equal(loadConfig({ env: { BERTH_SERVER_ADDR: addr } }).server.addr, addr);
    }
    for (const url of ['postgres://u@h:5432/db', 'postgresql://h/db', '']) {
      assert.equal(loadConfig({ env: { BERTH_DATABASE_URL: url } }).database.url, url);
    }
    assert.equal(loadConfig({ env: { BERTH_SERVER_EXTERNAL_URL: 'https://registry.example.com' } }).server.externalUrl, 'https://registry.example.com');
  });

  it('parseAddr splits host and port', () => {
    assert.deepEqual(parseAddr('127.0.0.1:5000'), { host: '127.0.0.1', port: 5000 });
    assert.deepEqual(parseAddr(':80'), { host: '0.0.0.0', port: 80 });
    assert.deepEqual(parseAddr('[::1]:0'), { host: '::1', port: 0 });
  });

  it('resolveDataPath resolves under dataDir', () => {
    const config = loadConfig({ env: { BERTH_DATA_DIR: '/srv/berth' } });
    assert.equal(resolveDataPath(config, 'berth.db'), '/srv/berth/berth.db');
  });
});

/**
 * Reads example.yaml line by line: each key with its dotted path, in file order, and the comment
 * lines directly above it.
 */
function exampleKeys(text: string): Array<{ key: string; comment: string[]; leaf: boolean }> {
  const out: Array<{ key: string; comment: string[]; leaf: boolean }> = [];
  const stack: Array<{ indent: number; name: string }> = [];
  let comment: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      comment = [];
      continue;
    }
    const commentMatch = /^\s*#\s?(.*)$/.exec(line);
    if (commentMatch) {
      comment.push(commentMatch[1] as string);
      continue;
    }
    const keyMatch = /^( *)([A-Za-z][A-Za-z0-9]*):(.*)$/.exec(line);
    assert.ok(keyMatch, `unexpected line in example.yaml: ${line}`);
    const indent = (keyMatch[1] as string).length;
    while (stack.length > 0 && (stack.at(-1) as { indent: number }).indent >= indent) stack.pop();
    const dotted = [...stack.map((s) => s.name), keyMatch[2] as string].join('.');
    const leaf = (keyMatch[3] as string).trim() !== '';
    out.push({ key: dotted, comment, leaf });
    if (!leaf) stack.push({ indent, name: keyMatch[2] as string });
    comment = [];
  }
  return out;
}

describe('config/example.yaml', () => {
  const text = readFileSync(EXAMPLE, 'utf8');
  const schemaKeys = listKeys().map((k) => k.path.join('.'));
  const fileKeys = exampleKeys(text).filter((k) => k.leaf);

  it('is a valid config file that yields exactly the defaults', () => {
    assert.deepEqual(loadConfig({ file: EXAMPLE, env: {} }), loadConfig({ env: {} }));
  });

  it('documents every schema key and no other', () => {
    const documented = new Set(fileKeys.map((k) => k.key));
    assert.equal(documented.size, fileKeys.length, 'a key appears twice');
    assert.deepEqual([...documented].filter((k) => !schemaKeys.includes(k)), [], 'keys in example.yaml that the schema lacks');
    assert.deepEqual(schemaKeys.filter((k) => !documented.has(k)), [], 'schema keys missing from example.yaml');
  });

  it("lists the keys in the schema's order", () => {
    assert.deepEqual(
      fileKeys.map((k) => k.key),
      schemaKeys,
    );
  });

  it('sets every key to its schema default', () => {
    const parsed = parseYaml(text) as unknown;
    for (const { path: keyPath, leaf } of listKeys()) assert.deepEqual(get(parsed, keyPath), leaf.default, keyPath.join('.'));
  });

  it('explains every key and names its environment variable', () => {
    for (const { path: keyPath } of listKeys()) {
      const entry = fileKeys.find((k) => k.key === keyPath.join('.'));
      assert.ok(entry, keyPath.join('.'));
      const explanation = entry.comment.filter((line) => !line.startsWith('env:'));
      assert.ok(explanation.join(' ').trim().length > 10, `${entry.key} has no explanation`);
      const envLine = entry.comment.find((line) => line.startsWith('env:'));
      assert.ok(envLine, `${entry.key} does not name its environment variable`);
      assert.equal(envLine.split(/\s+/)[1], envName(keyPath), entry.key);
    }
  });

  it('has only the sections of the schema', () => {
    const sections = exampleKeys(text).filter((k) => !k.leaf).map((k) => k.key);
    const schemaSections = (section: Section, prefix: string[]): string[] =>
      Object.entries(section).flatMap(([key, node]) => (isLeaf(node) ? [] : [[...prefix, key].join('.'), ...schemaSections(node, [...prefix, key])]));
    assert.deepEqual(sections, schemaSections(CONFIG_SCHEMA, []));
  });
});
