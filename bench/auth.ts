/**
 * The auth-overhead section: what Docker token auth adds to a manifest GET, and what the token
 * endpoint serves. Three fresh Berths run side by side: one with auth off (the baseline, the same
 * configuration as the rows against the reference), a second one with auth off (the control: how
 * far two identical Berths differ in this run, i.e. the noise floor) and one with auth on
 * ('berth-auth'); all get the same small image in `library/bench-meta` (the project `library`
 * exists on first start). Every row runs in every round, interleaved and alternating the order,
 * like the other rows; the ratios are against the no-auth manifest GET of the same round.
 */
import { Client } from './http.ts';
import { type LoadResult, median, runLoad } from './load.ts';
import { configBlob, descriptor, imageManifest, MANIFEST_ACCEPT, OCI_CONFIG, OCI_LAYER, pushPostPut, putManifest } from './oci.ts';
import { cpuSeconds, machineBusySeconds, selfCpuSeconds } from './procfs.ts';
import type { FrameTest, ProfileSummary } from './profile.ts';
import { type Measurement, summarize, type TargetSummary, toMeasurement } from './results.ts';
import type { Context } from './scenarios.ts';
import { BENCH_ADMIN_PASSWORD, type Server } from './servers.ts';

/** The id `--only` selects the section by. */
export const AUTH_SECTION_ID = 'auth';
export const AUTH_HEADING = '## Auth overhead (Berth with auth vs Berth without)';
export const AUTH_REPO = 'library/bench-meta';
/** Berth's token service name (auth.service, default `berth`). */
const SERVICE = 'berth';
/** Goal of the authenticated manifest GETs against the no-auth one (issue 3: at most 10% slower). */
export const AUTH_GOAL = 0.9;

export const ADMIN_BASIC = `Basic ${Buffer.from(`admin:${BENCH_ADMIN_PASSWORD}`).toString('base64')}`;
const MANIFEST_PATH = `/v2/${AUTH_REPO}/manifests/latest`;
const TOKEN_PATH = `/service/token?service=${SERVICE}&scope=${encodeURIComponent(`repository:${AUTH_REPO}:pull`)}`;

/** Which Berth a row runs against: the baseline without auth, the control (a second one without auth), or the one with auth. */
export type AuthServer = 'plain' | 'control' | 'auth';

export interface AuthScenario {
  readonly id: string;
  readonly title: string;
  readonly server: AuthServer;
  /** Goal of this row's rate against the baseline's; undefined for informational rows. */
  readonly goal: number | undefined;
  /** The no-auth manifest GET every other row is compared with. */
  readonly baseline?: boolean;
  readonly concurrency: number;
  /** `token` is the pull token obtained once from the server the row runs against (unused without auth). */
  readonly run: (baseUrl: string, token: string, maxMs: number) => Promise<LoadResult>;
}

export interface AuthRow {
  readonly scenario: AuthScenario;
  readonly summary: TargetSummary | undefined;
  /** The median over the rounds of this row's rate / the baseline's in the same round: what the goal is judged on. */
  readonly pairedRatio: number;
  /** This row's median rate / the baseline's. */
  readonly ratio: number;
  /** This row's server CPU per request minus the baseline's, in µs. */
  readonly extraCpuUs: number;
  /** Per round: the rate and the server CPU per request, in µs (for the log and the detail). */
  readonly perRound: readonly { readonly value: number; readonly cpuUs: number }[];
  profile?: ProfileSummary;
}

/** A closed loop of `concurrency` workers, each sending one request at a time with `headers`. */
function requestLoad(baseUrl: string, concurrency: number, maxMs: number, headers: Record<string, string>, path: string): Promise<LoadResult> {
  const client = new Client(baseUrl, concurrency, { headers });
  return runLoad({
    concurrency,
    maxOps: 1_000_000,
    maxMs,
    op: async () => {
      await client.request('GET', path, { expect: [200] });
      return 0;
    },
  }).finally(() => client.close());
}

export function authScenarios(concurrency: number): AuthScenario[] {
  const manifest = { accept: MANIFEST_ACCEPT };
  return [
    {
      id: 'auth-baseline',
      title: 'manifest GET by tag, Berth without auth (baseline)',
      server: 'plain',
      goal: undefined,
      baseline: true,
      concurrency,
      run: (baseUrl, _token, maxMs) => requestLoad(baseUrl, concurrency, maxMs, manifest, MANIFEST_PATH),
    },
    {
      id: 'auth-control',
      title: 'control: manifest GET by tag, a second Berth without auth (the noise between two identical Berths)',
      server: 'control',
      goal: undefined,
      concurrency,
      run: (baseUrl, _token, maxMs) => requestLoad(baseUrl, concurrency, maxMs, manifest, MANIFEST_PATH),
    },
    {
      id: 'auth-manifest-bearer',
      title: 'manifest GET by tag, bearer token obtained once (docker, containerd)',
      server: 'auth',
      goal: AUTH_GOAL,
      concurrency,
      run: (baseUrl, token, maxMs) => requestLoad(baseUrl, concurrency, maxMs, { ...manifest, authorization: `Bearer ${token}` }, MANIFEST_PATH),
    },
    {
      id: 'auth-manifest-basic',
      title: 'manifest GET by tag, Basic admin credentials on every request (clients that send Basic directly, e.g. curl in CI scripts)',
      server: 'auth',
      goal: AUTH_GOAL,
      concurrency,
      run: (baseUrl, _token, maxMs) => requestLoad(baseUrl, concurrency, maxMs, { ...manifest, authorization: ADMIN_BASIC }, MANIFEST_PATH),
    },
    {
      id: 'auth-token-basic',
      title: `token endpoint: GET /service/token, Basic admin credentials, scope repository:${AUTH_REPO}:pull`,
      server: 'auth',
      goal: undefined,
      concurrency,
      run: (baseUrl, _token, maxMs) => requestLoad(baseUrl, concurrency, maxMs, { authorization: ADMIN_BASIC }, TOKEN_PATH),
    },
    {
      id: 'auth-token-anonymous',
      title: `token endpoint: GET /service/token, anonymous, scope repository:${AUTH_REPO}:pull (public project)`,
      server: 'auth',
      goal: undefined,
      concurrency,
      run: (baseUrl, _token, maxMs) => requestLoad(baseUrl, concurrency, maxMs, {}, TOKEN_PATH),
    },
  ];
}

/** Pushes the section's image (config, one 1 KiB layer, manifest tagged latest); admin Basic when `auth`. Returns the manifest digest. */
export async function seedAuth(baseUrl: string, ctx: Context, auth: boolean): Promise<string> {
  const client = new Client(baseUrl, 1, auth ? { headers: { authorization: ADMIN_BASIC } } : {});
  try {
    const config = configBlob('auth-meta');
    const layer = ctx.families.tiny.variant('auth-meta-layer');
    await pushPostPut(client, AUTH_REPO, config);
    await pushPostPut(client, AUTH_REPO, layer);
    return await putManifest(client, AUTH_REPO, 'latest', imageManifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)]));
  } finally {
    client.close();
  }
}

interface TokenBody {
  readonly token?: string;
}

/** The `access` claim of a JWT, read without verifying (the server verifies; we only check what it granted). */
function accessOf(token: string): unknown {
  const payload = token.split('.')[1] ?? '';
  return (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { access?: unknown }).access;
}

function grantsPull(token: string): boolean {
  const access = accessOf(token);
  return Array.isArray(access) && access.some((a: { type?: string; name?: string; actions?: string[] }) => a.type === 'repository' && a.name === AUTH_REPO && a.actions?.includes('pull') === true);
}

/** A pull token for AUTH_REPO, as `docker pull` after `docker login` gets it: admin Basic credentials on the token endpoint. */
export async function pullToken(baseUrl: string, authorization?: string): Promise<string> {
  const client = new Client(baseUrl, 1);
  try {
    const res = await client.request('GET', TOKEN_PATH, { headers: authorization ? { authorization } : {}, keepBody: true, expect: [200] });
    const token = (JSON.parse((res.body as Buffer).toString('utf8')) as TokenBody).token;
    if (typeof token !== 'string' || !grantsPull(token)) throw new Error(`the token endpoint of ${baseUrl} did not grant pull on ${AUTH_REPO}`);
    return token;
  } finally {
    client.close();
  }
}

/**
 * Untimed checks that the servers are what the rows claim: the auth Berth refuses an anonymous
 * manifest GET with a bearer challenge, the others serve it, all serve the same manifest, and both
 * tokens grant pull. Returns one line per check for the report and the admin's pull token
 * (obtained once, as docker does after a login); throws if a check fails.
 */
export async function checkAuthSetup(servers: Record<AuthServer, Server>, digests: Record<AuthServer, string>): Promise<{ lines: string[]; token: string }> {
  const { plain, control, auth } = servers;
  const get = async (baseUrl: string, headers: Record<string, string>) => {
    const client = new Client(baseUrl, 1);
    try {
      return await client.request('GET', MANIFEST_PATH, { headers: { accept: MANIFEST_ACCEPT, ...headers } });
    } finally {
      client.close();
    }
  };
  const lines: string[] = [];
  if (digests.plain !== digests.auth || digests.plain !== digests.control || digests.plain === '') {
    throw new Error(`the Berths hold different manifests: ${digests.plain}, ${digests.control}, ${digests.auth}`);
  }
  lines.push(`the three Berths serve the same manifest \`${AUTH_REPO}:latest\` (${digests.plain.slice(0, 19)}…)`);
  const anonymous = await get(auth.baseUrl, {});
  const challenge = String(anonymous.headers['www-authenticate'] ?? '');
  if (anonymous.status !== 401 || !/^Bearer /i.test(challenge)) throw new Error(`berth-auth answered an anonymous manifest GET with ${anonymous.status} (${challenge}); auth is not on`);
  lines.push(`Berth with auth answers an anonymous manifest GET with 401 and \`WWW-Authenticate: ${challenge.replace(/,scope=.*$/, ',scope=…')}\``);
  for (const server of [plain, control]) {
    const open = await get(server.baseUrl, {});
    if (open.status !== 200) throw new Error(`a Berth without auth answered an anonymous manifest GET with ${open.status}`);
  }
  lines.push('both Berths without auth answer the same anonymous GET with 200');
  const basic = await get(auth.baseUrl, { authorization: ADMIN_BASIC });
  if (basic.status !== 200) throw new Error(`berth-auth refused admin Basic credentials: ${basic.status}`);
  await pullToken(auth.baseUrl);
  const token = await pullToken(auth.baseUrl, ADMIN_BASIC);
  const bearer = await get(auth.baseUrl, { authorization: `Bearer ${token}` });
  if (bearer.status !== 200) throw new Error(`berth-auth refused the admin's pull token: ${bearer.status}`);
  lines.push(`the anonymous token (public project \`library\`) and the admin token both grant pull on \`${AUTH_REPO}\`; the manifest GET with the admin token or with admin Basic credentials answers 200`);
  return { lines, token };
}

export interface AuthRun {
  readonly rows: AuthRow[];
  readonly rounds: number;
  readonly requestMs: number;
}

/**
 * Measures every row in every round against its server, interleaved (order alternating), after
 * one unmeasured warm-up per row. `busyPids` are all the servers running, whose CPU is not "other".
 */
export async function measureAuth(options: {
  readonly scenarios: readonly AuthScenario[];
  readonly servers: Record<AuthServer, Server>;
  readonly tokens: Record<AuthServer, string>;
  readonly busyPids: readonly number[];
  readonly rounds: number;
  readonly requestMs: number;
  readonly warmupMs: number;
  readonly log: (line: string) => void;
}): Promise<AuthRun> {
  const { scenarios, servers, tokens } = options;
  const runOne = (s: AuthScenario, maxMs: number) => s.run(servers[s.server].baseUrl, tokens[s.server], maxMs);
  // The baseline runs between the first two rows with a goal, so in either direction it is next to
  // both; the control comes next, as far from the baseline as the second of them.
  const goalRows = scenarios.filter((s) => s.goal !== undefined);
  const control = scenarios.filter((s) => s.server === 'control');
  const rest = scenarios.filter((s) => s.goal === undefined && !s.baseline && s.server !== 'control');
  const sequence = [...goalRows.slice(0, 1), ...scenarios.filter((s) => s.baseline), ...goalRows.slice(1), ...control, ...rest];
  for (const s of sequence) await runOne(s, options.warmupMs);
  const measured = new Map<AuthScenario, Measurement[]>(scenarios.map((s) => [s, []]));
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? sequence : [...sequence].reverse();
    for (const s of order) {
      const pid = servers[s.server].pid;
      const snapshot = () => ({ server: cpuSeconds(pid), all: options.busyPids.reduce((n, p) => n + cpuSeconds(p), 0), client: selfCpuSeconds(), machine: machineBusySeconds() });
      const before = snapshot();
      const load = await runOne(s, options.requestMs);
      const after = snapshot();
      const d = (k: keyof typeof before) => after[k] - before[k];
      (measured.get(s) as Measurement[]).push(toMeasurement('berth', round, 'req/s', load, { server: d('server'), client: d('client'), other: d('machine') - d('all') - d('client') }));
    }
    options.log(`  auth round ${round + 1}/${options.rounds}`);
  }
  const base = scenarios.find((s) => s.baseline);
  const baseMs = base ? (measured.get(base) as Measurement[]) : [];
  const baseSummary = summarize(baseMs);
  const rows = scenarios.map((s): AuthRow => {
    const ms = measured.get(s) as Measurement[];
    const summary = summarize(ms);
    const perRound = ms.map((m) => m.value / (baseMs.find((b) => b.round === m.round)?.value ?? Number.NaN));
    return {
      scenario: s,
      summary,
      ratio: summary && baseSummary ? summary.value / baseSummary.value : Number.NaN,
      pairedRatio: median(perRound),
      extraCpuUs: summary && baseSummary ? summary.cpuPerUnitUs - baseSummary.cpuPerUnitUs : Number.NaN,
      perRound: ms.map((m) => ({ value: m.value, cpuUs: m.units > 0 ? (m.cpuSeconds * 1e6) / m.units : Number.NaN })),
    };
  });
  return { rows, rounds: options.rounds, requestMs: options.requestMs };
}

/** The frames of the auth path (the /v2 guard, logins, tokens, the project lookups it makes), for the profile's focus. */
export const AUTH_FRAMES: FrameTest = (f) => f.url.includes('/src/iam/') || f.url.includes('/src/projects/') || f.url.includes('/node_modules/jose/');

export function authBelowGoal(row: AuthRow): boolean {
  return row.scenario.goal !== undefined && (!(row.pairedRatio >= row.scenario.goal) || (row.summary?.errors ?? 1) > 0);
}
