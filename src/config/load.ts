import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type Config, CONFIG_SCHEMA, isLeaf, type Leaf, type Section } from './schema.ts';

/** A configuration problem, naming the key that is wrong. */
export class ConfigError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

type Raw = Record<string, unknown>;

function defaultsOf(section: Section): Raw {
  const out: Raw = {};
  for (const [key, node] of Object.entries(section)) out[key] = isLeaf(node) ? node.default : defaultsOf(node);
  return out;
}

function coerce(leaf: Leaf, value: unknown, key: string, fromText: boolean): unknown {
  switch (leaf.kind) {
    case 'string':
      if (typeof value === 'string') return value;
      throw new ConfigError(key, `expected a string, got ${JSON.stringify(value)}`);
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (fromText && (value === 'true' || value === 'false')) return value === 'true';
      throw new ConfigError(key, `expected true or false, got ${JSON.stringify(value)}`);
    case 'integer': {
      const n = fromText && typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new ConfigError(key, `expected an integer, got ${JSON.stringify(value)}`);
      if (n < leaf.min || n > leaf.max) throw new ConfigError(key, `must be between ${leaf.min} and ${leaf.max}, got ${n}`);
      return n;
    }
    case 'enum':
      if (typeof value === 'string' && leaf.values.includes(value)) return value;
      throw new ConfigError(key, `must be one of ${leaf.values.join(', ')}, got ${JSON.stringify(value)}`);
  }
}

/** Overlays `input` onto `target`, validating every key against the schema; unknown keys are errors. */
function overlay(section: Section, target: Raw, input: unknown, prefix: string, fromText: boolean): void {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError(prefix || '(root)', 'expected a mapping');
  }
  for (const [key, value] of Object.entries(input)) {
    const where = prefix ? `${prefix}.${key}` : key;
    const node = section[key];
    if (!node) throw new ConfigError(where, 'unknown key');
    if (isLeaf(node)) target[key] = coerce(node, value, where, fromText);
    else overlay(node, target[key] as Raw, value, where, fromText);
  }
}

/** BERTH_SERVER_ADDR ← server.addr, BERTH_REGISTRY_MANIFEST_MAX_BYTES ← registry.manifestMaxBytes … */
export function envName(keyPath: readonly string[]): string {
  return `BERTH_${keyPath.map((k) => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;
}

export function listKeys(section: Section = CONFIG_SCHEMA, prefix: string[] = []): Array<{ path: string[]; leaf: Leaf }> {
  return Object.entries(section).flatMap(([key, node]) =>
    isLeaf(node) ? [{ path: [...prefix, key], leaf: node }] : listKeys(node, [...prefix, key]),
  );
}

function envOverlay(env: NodeJS.ProcessEnv): Raw {
  const out: Raw = {};
  for (const { path: keyPath } of listKeys()) {
    const value = env[envName(keyPath)];
    if (value === undefined) continue;
    let cursor = out;
    for (const part of keyPath.slice(0, -1)) cursor = (cursor[part] ??= {}) as Raw;
    cursor[keyPath.at(-1) as string] = value;
  }
  return out;
}

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Values from CLI flags, in the same shape as the file. */
  overrides?: Raw;
}

export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, `cannot read config file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    return parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(file, `invalid YAML: ${(err as Error).message}`);
  }
}

/** Builds the frozen configuration; throws ConfigError naming the first bad key. */
export function loadConfig(options: LoadOptions = {}): Config {
  const config = defaultsOf(CONFIG_SCHEMA);
  if (options.file) overlay(CONFIG_SCHEMA, config, readConfigFile(options.file), '', false);
  overlay(CONFIG_SCHEMA, config, envOverlay(options.env ?? process.env), '', true);
  if (options.overrides) overlay(CONFIG_SCHEMA, config, options.overrides, '', true);
  const resolved = config as unknown as Config;
  parseAddr(resolved.server.addr);
  if (resolved.database.url && !/^postgres(ql)?:\/\//.test(resolved.database.url)) {
    throw new ConfigError('database.url', 'must be a postgres:// URL or empty for SQLite');
  }
  if (resolved.server.externalUrl && !/^https?:\/\/[^/]+/.test(resolved.server.externalUrl)) {
    throw new ConfigError('server.externalUrl', 'must be an http:// or https:// URL');
  }
  return deepFreeze(resolved);
}

export function parseAddr(addr: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535) throw new ConfigError('server.addr', `expected HOST:PORT, got ${JSON.stringify(addr)}`);
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

export function resolveDataPath(config: Config, ...parts: string[]): string {
  return path.resolve(config.dataDir, ...parts);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
