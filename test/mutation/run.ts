import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createLocalCa } from '../../local/common/tls.js';

/**
 * `npm run test:mutation`: StrykerJS on the modules where a silent bug costs most (stryker.config.json
 * lists them), incrementally (test/mutation/stryker-incremental.json, committed: a re-run mutates only
 * what changed since), then the score of each module against MODULE_THRESHOLD.
 *
 * Stryker runs the tests in worker threads of its own processes, which read NODE_EXTRA_CA_CERTS only
 * when they start: the run's test CA is made here, before them, and handed to the tests' global setup
 * in RELAY_TEST_TLS_DIR (a private temporary folder, removed at the end). Arguments are passed on to
 * `stryker run` (e.g. `-- --mutate shared/telemetry/redact.ts`, `-- --force` for a full run).
 */
const MODULE_THRESHOLD = 85;
const repo = resolve(import.meta.dirname, '..', '..', '..');
const report = join(repo, 'reports', 'mutation', 'mutation.json');

interface MutantResult {
  status: 'Killed' | 'Survived' | 'NoCoverage' | 'Timeout' | 'CompileError' | 'RuntimeError' | 'Ignored' | 'Pending';
}

/** Stryker's mutation score: detected (killed or timed out) of the valid mutants (compile errors and ignored ones are not). */
export function scoreOf(mutants: MutantResult[]): {
  detected: number;
  valid: number;
  survived: number;
  noCoverage: number;
  score: number;
} {
  const count = (...statuses: MutantResult['status'][]) => mutants.filter((m) => statuses.includes(m.status)).length;
  const detected = count('Killed', 'Timeout');
  const survived = count('Survived');
  const noCoverage = count('NoCoverage');
  const valid = detected + survived + noCoverage;
  return { detected, valid, survived, noCoverage, score: valid === 0 ? 100 : (detected / valid) * 100 };
}

async function main(): Promise<number> {
  const tlsDir = mkdtempSync(join(tmpdir(), 'defender-relay-mutation-'));
  try {
    const ca = createLocalCa('defender-relay mutation-test CA');
    const server = ca.issueServerCert();
    writeFileSync(join(tlsDir, 'ca.pem'), ca.caCertPem);
    writeFileSync(join(tlsDir, 'server.pem'), server.cert);
    writeFileSync(join(tlsDir, 'server-key.pem'), server.key, { mode: 0o600 });
    const started = Date.now();
    const code = await new Promise<number>((done) => {
      const child = spawn(
        process.execPath,
        [join(repo, 'node_modules', '@stryker-mutator', 'core', 'bin', 'stryker.js'), 'run', ...process.argv.slice(2)],
        {
          cwd: repo,
          stdio: 'inherit',
          env: { ...process.env, NODE_EXTRA_CA_CERTS: join(tlsDir, 'ca.pem'), RELAY_TEST_TLS_DIR: tlsDir },
        },
      );
      child.once('exit', (exitCode) => done(exitCode ?? 1));
    });
    // The per-module threshold is checked here (Stryker's own break threshold is on the total only).
    if (code !== 0 || !existsSync(report)) return code || 1;
    return printScores(
      JSON.parse(readFileSync(report, 'utf8')) as { files: Record<string, { mutants: MutantResult[] }> },
      (Date.now() - started) / 1000,
    );
  } finally {
    rmSync(tlsDir, { recursive: true, force: true });
  }
}

/** The latest scores go into bench/results.json beside the benchmark's figures (the bench keeps them). */
function recordScores(
  rows: ({ file: string } & ReturnType<typeof scoreOf>)[],
  all: ReturnType<typeof scoreOf>,
  seconds: number,
): void {
  const path = join(repo, 'bench', 'results.json');
  let results: Record<string, unknown> = {};
  try {
    results = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    // No benchmark report yet: the scores start the file.
  }
  const score = (r: ReturnType<typeof scoreOf>) => ({
    score: Number(r.score.toFixed(1)),
    killed: r.detected,
    valid: r.valid,
    survived: r.survived,
    noCoverage: r.noCoverage,
  });
  results.mutation = {
    date: new Date().toISOString(),
    command: `npm run test:mutation${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    durationSeconds: Math.round(seconds),
    threshold: MODULE_THRESHOLD,
    modules: Object.fromEntries(rows.map((r) => [r.file, score(r)])),
    all: score(all),
  };
  writeFileSync(path, `${JSON.stringify(results, null, 2)}\n`);
}

function printScores(result: { files: Record<string, { mutants: MutantResult[] }> }, seconds: number): number {
  const rows = Object.entries(result.files)
    .map(([file, { mutants }]) => ({ file, ...scoreOf(mutants) }))
    .sort((a, b) => a.file.localeCompare(b.file));
  const all = scoreOf(Object.values(result.files).flatMap((f) => f.mutants));
  const width = Math.max(...rows.map((r) => r.file.length), 'module'.length);
  const line = (file: string, r: ReturnType<typeof scoreOf>, mark: string) =>
    `${file.padEnd(width)}  ${r.score.toFixed(1).padStart(5)}%  ${String(r.detected).padStart(5)} / ${String(r.valid).padEnd(5)}  ${String(r.survived).padStart(8)}  ${String(r.noCoverage).padStart(11)}  ${mark}`;
  console.log(`\nMutation score per module (threshold ${MODULE_THRESHOLD}%), ${seconds.toFixed(0)} s:`);
  console.log(`${'module'.padEnd(width)}  score   killed / valid  survived  no coverage`);
  for (const r of rows) console.log(line(r.file, r, r.score >= MODULE_THRESHOLD ? '' : `below ${MODULE_THRESHOLD}%`));
  console.log(line('all', all, ''));
  recordScores(rows, all, seconds);
  const below = rows.filter((r) => r.score < MODULE_THRESHOLD);
  if (below.length > 0)
    console.log(
      `\n${below.length} module(s) below ${MODULE_THRESHOLD}%: see the surviving mutants above (reports/mutation/mutation.json has them all).`,
    );
  return below.length > 0 ? 1 : 0;
}

process.exitCode = await main();
