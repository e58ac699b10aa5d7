/**
 * Project metadata: Harbor's string map of per-project settings (swagger `ProjectMetadata`). Values
 * are always strings, booleans spelled "true" or "false". `public` lives in its own column and is
 * merged into the map when a project is shown.
 */
import { badRequest } from '../platform/http/api.ts';

const BOOLEAN_KEYS = [
  'public',
  'enable_content_trust',
  'enable_content_trust_cosign',
  'prevent_vul',
  'auto_scan',
  'auto_sbom_generation',
  'reuse_sys_cve_allowlist',
] as const;

/** Keys a project admin sets through the API. */
export const SETTABLE_METADATA_KEYS: readonly string[] = [...BOOLEAN_KEYS, 'severity'];

/** Keys of proxy-cache projects, which Berth does not have (yet): refused rather than stored unused. */
const PROXY_CACHE_KEYS = new Set([
  'proxy_speed_kb',
  'max_upstream_conn',
  'proxy_cache_local_on_not_found',
  'proxy_referrer_api',
  'proxy_cache_filter_pattern',
  'proxy_cache_filter_kind',
]);

/** Set by other capabilities (tag retention), never directly through the metadata API. */
export const RETENTION_ID = 'retention_id';

/** Every key Harbor defines, for the OpenAPI document. */
export const ALL_METADATA_KEYS: readonly string[] = [...SETTABLE_METADATA_KEYS, RETENTION_ID, ...PROXY_CACHE_KEYS];

/** Harbor's CVSS v3 severities; `negligible` and `unknown` are read as their v3 equivalents as Harbor does. */
const SEVERITIES: Record<string, string> = {
  none: 'none',
  unknown: 'none',
  negligible: 'low',
  low: 'low',
  medium: 'medium',
  high: 'high',
  critical: 'critical',
};

/** A 400 for a key the metadata API does not set: unknown keys, proxy-cache keys, `retention_id`. */
export function checkSettableKey(key: string): void {
  if (SETTABLE_METADATA_KEYS.includes(key)) return;
  if (PROXY_CACHE_KEYS.has(key)) throw badRequest(`metadata.${key} applies to proxy-cache projects only, which Berth does not support`);
  if (key === RETENTION_ID) throw badRequest('metadata.retention_id is set by creating a tag retention policy, not directly');
  throw badRequest(`unknown metadata key "${key}"; known keys: ${SETTABLE_METADATA_KEYS.join(', ')}`);
}

/**
 * The stored form of one setting, or a 400 naming the key: keys checkSettableKey refuses,
 * values that are not strings, booleans other than "true"/"false", severities outside Harbor's list.
 */
export function normalizeMetadata(key: string, value: unknown): string {
  checkSettableKey(key);
  if (typeof value !== 'string') throw badRequest(`metadata.${key} must be a string`);
  if (key === 'severity') {
    const severity = SEVERITIES[value.toLowerCase()];
    if (severity === undefined) throw badRequest(`metadata.severity must be one of none, low, medium, high, critical; got "${value}"`);
    return severity;
  }
  if (value !== 'true' && value !== 'false') throw badRequest(`metadata.${key} must be "true" or "false", got "${value}"`);
  return value;
}

/** The stored map (JSON text, without `public`), tolerating a damaged value as empty. */
export function parseStoredMetadata(text: string): Record<string, string> {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return {};
  }
}

/** The map a client sees: `public` from its column, then the rest sorted by key. */
export function shownMetadata(isPublic: boolean, stored: Record<string, string>): Record<string, string> {
  const shown: Record<string, string> = { public: isPublic ? 'true' : 'false' };
  for (const key of Object.keys(stored).sort()) if (key !== 'public') shown[key] = stored[key] as string;
  return shown;
}
