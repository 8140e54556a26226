import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { entryPointFiles } from '../local/host/app-loader.js';
import { median } from './stats.js';

/**
 * Figure 6: how long a fresh Node process takes to import the built app (every file package.json
 * `main` names, one after another as the host loads them), against a bare `node -e 0`, the median
 * of several runs of each, interleaved so that both see the same machine.
 */
export interface ColdStart {
  files: number;
  runs: number;
  appMs: number[];
  bareMs: number[];
  medianAppMs: number;
  medianBareMs: number;
}

function timeNode(args: string[], env: NodeJS.ProcessEnv): number {
  const started = performance.now();
  const result = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  const elapsed = performance.now() - started;
  if (result.status !== 0)
    throw new Error(
      `node ${args.slice(0, 2).join(' ')} … failed (exit ${result.status}): ${result.stderr.toString().trim().slice(-500)}`,
    );
  return elapsed;
}

export function measureColdStart(appDir: string, runs: number): ColdStart {
  const urls = entryPointFiles(appDir).map((file) => pathToFileURL(file).href);
  const script = `for (const url of ${JSON.stringify(urls)}) await import(url);`;
  // Outside the Functions runtime @azure/functions switches to test mode (and says so on stderr).
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  timeNode(['--input-type=module', '-e', script], env); // first run warms the file cache
  const appMs: number[] = [];
  const bareMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    bareMs.push(timeNode(['-e', '0'], env));
    appMs.push(timeNode(['--input-type=module', '-e', script], env));
  }
  return { files: urls.length, runs, appMs, bareMs, medianAppMs: median(appMs), medianBareMs: median(bareMs) };
}
