import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { QUEUE_NAMES } from '../shared/queues.js';
import type { BacklogJob, BacklogResult } from './backlog-worker.js';
import { addPartnerTenant, clearQueue, type BenchWorld } from './world.js';

/**
 * Figure 5: the peak memory of polling a backlog into the queue, each backlog in a fresh process
 * (the stand-ins stay in this one), so the figure is the poller's alone. A poller that streams in
 * bounded runs needs about as much for 10,000 incidents as for 1,000.
 */
export interface BacklogMemory extends BacklogResult {
  incidents: number;
}

const WORKER = fileURLToPath(new URL('./backlog-worker.js', import.meta.url));

function pollInFreshProcess(job: BacklogJob): Promise<BacklogResult> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
    let answered = false;
    child.once('message', (message: { ok: true; result: BacklogResult } | { ok: false; error: string }) => {
      answered = true;
      if (message.ok) resolve(message.result);
      else reject(new Error(`The backlog poller failed: ${message.error}`));
    });
    child.once('exit', (code) => {
      if (!answered) reject(new Error(`The backlog poller exited (code ${code}) without a result${stderr ? `: ${stderr.trim().slice(-500)}` : ''}`));
    });
    child.send(job);
  });
}

export async function measureBacklog(bench: BenchWorld, incidents: number): Promise<BacklogMemory> {
  const tenantId = randomUUID();
  await addPartnerTenant(bench, { tenantId, displayName: `Bench backlog ${incidents}`, incidents, seed: `backlog-${incidents}` });
  await clearQueue(bench.queues, QUEUE_NAMES.incidents);
  await clearQueue(bench.queues, QUEUE_NAMES.pollRequests);
  const result = await pollInFreshProcess({ appSettings: bench.appSettings, tenantId, maxPagesPerRun: bench.services.config.pollMaxPagesPerRun });
  await clearQueue(bench.queues, QUEUE_NAMES.incidents);
  if (result.enqueued !== incidents) throw new Error(`The backlog poller enqueued ${result.enqueued} events for ${incidents} incidents`);
  return { incidents, ...result };
}
