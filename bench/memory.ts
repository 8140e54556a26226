import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QUEUE_NAMES } from '../shared/storage/queues.js';
import type { BacklogJob, BacklogResult } from './backlog-worker.js';
import { addPartnerTenant, clearQueue, type BenchWorld } from './world.js';

/**
 * Figure 5: the peak memory of polling a backlog into the queue, each backlog in a fresh process
 * (the stand-ins stay in this one), so the figure is the poller's alone. A poller that streams in
 * bounded runs needs about as much for 10,000 incidents as for 1,000.
 *
 * The process gets the heap V8 would give it on the instance the app deploys to (a quarter of the
 * machine's memory). On a large workstation V8 lets garbage pile up to a far higher first limit
 * before its first full collection, so a short poll never collects and a long one does, and peak RSS
 * would compare collection schedules rather than what the poller holds.
 */
export interface BacklogMemory extends BacklogResult {
  incidents: number;
  /** --max-old-space-size of the measured process; undefined: V8's default for this machine. */
  maxOldSpaceMb?: number;
}

/** The heap limit V8 sets on a Flex Consumption instance of infra/main.bicep's default memory size. */
export function instanceHeapMb(mainBicep = resolve('infra/main.bicep')): { instanceMemoryMb: number; heapMb: number } {
  const memory = /param instanceMemoryMB int = (\d+)/.exec(readFileSync(mainBicep, 'utf8'))?.[1];
  if (!memory)
    throw new Error('infra/main.bicep no longer sets a default instanceMemoryMB; the memory figure needs it');
  return { instanceMemoryMb: Number(memory), heapMb: Number(memory) / 4 };
}

const WORKER = fileURLToPath(new URL('./backlog-worker.js', import.meta.url));

function pollInFreshProcess(job: BacklogJob, maxOldSpaceMb: number | undefined): Promise<BacklogResult> {
  return new Promise((resolve, reject) => {
    const execArgv = maxOldSpaceMb ? [`--max-old-space-size=${maxOldSpaceMb}`] : [];
    const child = fork(WORKER, [], { execArgv, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
    let answered = false;
    child.once('message', (message: { ok: true; result: BacklogResult } | { ok: false; error: string }) => {
      answered = true;
      if (message.ok) resolve(message.result);
      else reject(new Error(`The backlog poller failed: ${message.error}`));
    });
    child.once('exit', (code) => {
      if (!answered)
        reject(
          new Error(
            `The backlog poller exited (code ${code}) without a result${stderr ? `: ${stderr.trim().slice(-500)}` : ''}`,
          ),
        );
    });
    child.send(job);
  });
}

export async function measureBacklog(
  bench: BenchWorld,
  incidents: number,
  maxOldSpaceMb?: number,
): Promise<BacklogMemory> {
  const tenantId = randomUUID();
  await addPartnerTenant(bench, {
    tenantId,
    displayName: `Bench backlog ${incidents}`,
    incidents,
    seed: `backlog-${incidents}`,
  });
  await clearQueue(bench.queues, QUEUE_NAMES.incidents);
  await clearQueue(bench.queues, QUEUE_NAMES.pollRequests);
  const result = await pollInFreshProcess(
    { appSettings: bench.appSettings, tenantId, maxPagesPerRun: bench.services.config.pollMaxPagesPerRun },
    maxOldSpaceMb,
  );
  await clearQueue(bench.queues, QUEUE_NAMES.incidents);
  if (result.enqueued !== incidents)
    throw new Error(`The backlog poller enqueued ${result.enqueued} events for ${incidents} incidents`);
  return { incidents, maxOldSpaceMb, ...result };
}
