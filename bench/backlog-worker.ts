import { CallBudget } from '../shared/sources/call-budget.js';
import { loadConfig } from '../shared/config/config.js';
import { DefenderClient } from '../shared/sources/defender/client.js';
import { handlePollRequest } from '../shared/ingest/ingest-handlers.js';
import { createServices } from '../shared/services.js';
import { pollToTheEnd } from './poll-chain.js';

/**
 * Figure 5's measured process: polls one tenant's whole backlog into `incidents` through the app's
 * queue handler, one bounded run after another, sampling its own memory. Started fresh for each
 * backlog by bench/memory.ts, which sends the job over IPC and receives the figures back.
 */
export interface BacklogJob {
  appSettings: Record<string, string>;
  tenantId: string;
  maxPagesPerRun: number;
}

export interface BacklogResult {
  enqueued: number;
  runs: number;
  elapsedMs: number;
  /** Time of each poll run (handler call), to see where a slow run spent it. */
  runMs: number[];
  /** RSS once the app's modules are loaded, before the first poll. */
  idleRssBytes: number;
  peakRssBytes: number;
  peakHeapUsedBytes: number;
  /** The kernel's high-water mark (process.resourceUsage().maxRSS). */
  maxRssBytes: number;
}

async function run(job: BacklogJob): Promise<BacklogResult> {
  const services = createServices(loadConfig(job.appSettings));
  // The quota is figure 4's subject; here it would only add waiting.
  const defender = new DefenderClient({
    apiUrl: services.config.defender.apiUrl,
    tokens: services.tokens,
    budget: new CallBudget({ perMinute: 1_000_000, perHour: 10_000_000 }),
  });
  const app = { ...services, defender, config: { ...services.config, pollMaxPagesPerRun: job.maxPagesPerRun } };
  const logger = {
    lastError: undefined as string | undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (m: string) => void (logger.lastError = m),
  };

  const idleRssBytes = process.memoryUsage().rss;
  let peakRssBytes = idleRssBytes;
  let peakHeapUsedBytes = process.memoryUsage().heapUsed;
  const sample = () => {
    const usage = process.memoryUsage();
    peakRssBytes = Math.max(peakRssBytes, usage.rss);
    peakHeapUsedBytes = Math.max(peakHeapUsedBytes, usage.heapUsed);
  };
  const sampler = setInterval(sample, 10);

  const started = performance.now();
  const runMs: number[] = [];
  const timed = async (message: unknown) => {
    const runStarted = performance.now();
    try {
      return await handlePollRequest(message, app, logger);
    } finally {
      runMs.push(Math.round(performance.now() - runStarted));
    }
  };
  const { enqueued, runs } = await pollToTheEnd(app, job.tenantId, logger, timed);
  const elapsedMs = performance.now() - started;
  clearInterval(sampler);
  sample();
  return {
    enqueued,
    runs,
    elapsedMs,
    runMs,
    idleRssBytes,
    peakRssBytes,
    peakHeapUsedBytes,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

process.once('message', (job: BacklogJob) => {
  run(job).then(
    (result) => process.send!({ ok: true, result }, () => process.exit(0)),
    (err: unknown) =>
      process.send!({ ok: false, error: err instanceof Error ? err.message : String(err) }, () => process.exit(1)),
  );
});
if (!process.send) {
  console.error('bench/backlog-worker is started by the benchmark (npm run bench), not directly.');
  process.exit(2);
}
