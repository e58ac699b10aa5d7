/**
 * Runs every test file with node's test runner. Tiers run in order (unit, contract,
 * integration, e2e) after the static checks (tsc, biome), so a broken foundation fails fast;
 * `--tier NAME` runs one tier (static, unit, contract, integration or e2e).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const TIERS = ['unit', 'contract', 'integration', 'e2e'] as const;
const args = process.argv.slice(2);
const tierIndex = args.indexOf('--tier');
const only = tierIndex >= 0 ? args[tierIndex + 1] : undefined;
const tiers = only ? TIERS.filter((t) => t === only) : [...TIERS];
if (tiers.length === 0 && only !== 'static') {
  console.error(`unknown tier ${only}; one of ${TIERS.join(', ')}`);
  process.exit(2);
}

function findTests(folder: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(folder);
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const full = path.join(folder, entry);
    if (statSync(full).isDirectory()) return findTests(full);
    return entry.endsWith('.test.ts') ? [full] : [];
  });
}

// The static tier: the type checker and the linter, before anything runs.
if (!only || only === 'static') {
  for (const [label, command] of [['typecheck', ['node_modules/typescript/bin/tsc', '--noEmit']], ['lint', ['node_modules/@biomejs/biome/bin/biome', 'lint']]] as const) {
    const check = spawnSync(process.execPath, [...command], { stdio: 'inherit' });
    if (check.status !== 0) {
      console.error(`${label} failed`);
      process.exit(check.status ?? 1);
    }
  }
  if (only === 'static') process.exit(0);
}

const files = tiers.flatMap((tier) => findTests(path.join('test', tier)).sort());
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
// One file at a time: e2e files start real daemons and the machine has two cores.
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
