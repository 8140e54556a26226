import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { KeyAndCert } from '../local/common/tls.js';
import { measureColdStart } from './cold-start.js';
import { deploymentFiles } from '../scripts/deployment-package.js';
import { runInstancesBudget, type InstancesBudgetRun } from './instances-budget.js';
import { instanceHeapMb, measureBacklog, type BacklogMemory } from './memory.js';
import {
  runEnrich,
  runEnrichInstances,
  runGraphListing,
  runIngestRound,
  SEND_CONCURRENCY,
  QUEUE_BATCH,
  type EnrichRun,
  type GraphListing,
  type IngestRound,
} from './pipeline.js';
import {
  describeMachine,
  figure,
  formatTable,
  selectFigures,
  writeReport,
  type BenchReport,
  type Figure,
} from './report.js';
import { runSchedule, type ScheduleResult } from './schedule.js';
import { median, ratio, renewalIntervalMs } from './stats.js';
import { startBenchWorld } from './world.js';
import { TOKEN_REFRESH_MARGIN_MS } from '../shared/auth/credentials.js';

/**
 * Storage latency, added by a TCP proxy in front of Azurite for the relay and the raw reference
 * alike (bench/latency-proxy.ts). In-region: the network between an Azure region's availability
 * zones, "a round-trip latency of less than 2 ms" (Microsoft Learn, reliability/availability-zones-
 * overview); Azure Storage's own server time comes on top and is not modelled (Azurite's stands for
 * it). Waiting: a 20 ms round trip, where this 2-core machine waits on storage rather than computes,
 * as an instance that does not run Azurite beside itself does.
 */
const LATENCIES = [
  {
    id: 'in-region',
    label: 'in-region storage latency (2 ms round trip)',
    oneWayMs: 1,
    goals: { ingest: undefined, enrich: undefined },
  },
  {
    id: 'latency',
    label: 'storage latency that dominates (20 ms round trip)',
    oneWayMs: 10,
    goals: { ingest: { atLeast: 0.9 }, enrich: { atLeast: 0.7 } },
  },
] as const;

/** Every figure's id, in the order the report lists them: what `--only` chooses from. */
const FIGURE_IDS = [
  'ingest-throughput',
  'enrich-throughput',
  'extra-calls-per-event',
  'calls-per-100-incidents',
  'graph-calls-per-100-incidents',
  ...LATENCIES.flatMap((setting) => [`ingest-throughput-${setting.id}`, `enrich-throughput-${setting.id}`]),
  'enrich-scale-out-latency',
  'raw-scale-out-latency',
  'key-vault-reads-per-cycle',
  'token-requests-per-tenant-hour',
  'throttled-steady-state',
  'schedule-cycle-seconds',
  'instances-throttled',
  'budget-storage-operations-per-call',
  'backlog-memory',
  'cold-start',
] as const;

const USAGE = `Usage: npm run bench -- [--quick] [--only ID[,ID...]] [--out FILE]
  --quick        fewer rounds and smaller samples
  --only IDS     measure only what these figures need and report only them (ids below); such a
                 partial run writes its report only where --out says, never over bench/results.json
  --out FILE     where the report is written (default: bench/results.json, for a whole run)
Figure ids:
${FIGURE_IDS.map((id) => `  ${id}`).join('\n')}`;

function commandLine() {
  try {
    const { values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        only: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    });
    if (values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    const only = selectFigures(values.only, FIGURE_IDS);
    return { quick: values.quick, only, out: values.out ?? (only ? undefined : 'bench/results.json') };
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    process.exit(2);
  }
}

/**
 * `npm run bench`, the measuring process (bench/run.ts starts it with the stand-ins' CA trusted and
 * hands it their TLS key over IPC). Every figure is a ratio against a reference measured in this
 * same run, with the absolute numbers beside it. It reports; it does not gate: the exit code is 0
 * whatever the verdicts, 1 only when something could not be measured (2 for a command line it
 * cannot read).
 */
const args = commandLine();
/** Whether any of these figures is to be measured (all are without --only). */
const wants = (...ids: (typeof FIGURE_IDS)[number][]) => !args.only || ids.some((id) => args.only!.has(id));

const PLAN = args.quick
  ? {
      incidents: 1_050,
      rounds: 1,
      latencyRounds: 1,
      instancesSeconds: 20,
      enrichEvents: 512,
      enrichChunk: 128,
      tenants: 100,
      hourTenants: 20,
      backlogs: [1_000, 10_000] as const,
      coldStartRuns: 3,
      scaleOutChunks: 1,
    }
  : {
      incidents: 2_000,
      rounds: 3,
      latencyRounds: 2,
      instancesSeconds: 40,
      enrichEvents: 1_024,
      enrichChunk: 128,
      tenants: 500,
      hourTenants: 50,
      backlogs: [1_000, 10_000] as const,
      coldStartRuns: 7,
      // Each chunk also runs the raw reference on 1 and 3 consumers: 2 chunks take about two minutes.
      scaleOutChunks: 2,
    };

/** Instances for the scale-out figure, as many as the fault suite's and `npm start -- --instances 3`. */
const SCALE_OUT_INSTANCES = 3;
/**
 * The scale-out figure's storage latency. Azure gives each instance cores of its own; here all instances
 * share 2 cores with Azurite, so three only show how they scale where they wait rather than compute. At
 * a 20 ms round trip one instance already uses most of this machine (136 events/s alone, 166/s for three,
 * measured on 2 December); at 100 ms one instance's 32 events per five round trips is about 64/s, and
 * three fit in the CPU left.
 */
const SCALE_OUT_LATENCY = {
  label: 'storage latency where 3 instances wait rather than compute (100 ms round trip)',
  oneWayMs: 50,
};

const log = (line: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
const n = (value: number) => Math.round(value).toLocaleString('en-US');
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

function receiveTls(): Promise<KeyAndCert> {
  if (!process.send) {
    console.error(
      'Start the benchmark with `npm run bench` (node dist/bench/run.js): it needs the CA that launcher creates.',
    );
    process.exit(2);
  }
  return new Promise((resolvePromise) =>
    process.once('message', (message: { tls: KeyAndCert }) => {
      // Let go of the launcher's channel (after this tick: Node dislikes a disconnect inside its own message handler).
      setImmediate(() => process.disconnect?.());
      resolvePromise(message.tls);
    }),
  );
}

/** Figures 1 and 2 and the call counts, each from what was measured (a run with --only measures less). */
function pipelineFigures(
  { rounds, enrichRun, graph }: { rounds?: IngestRound[]; enrichRun?: EnrichRun; graph?: GraphListing },
  maxPagesPerRun: number,
): Figure[] {
  const figures: Figure[] = [];
  if (rounds) {
    const ingest = median(rounds.map((r) => r.ingest.perSecond));
    const rawSend = median(rounds.map((r) => r.rawSend.perSecond));
    const size = median(rounds.map((r) => r.messageBytes.mean));
    figures.push(
      figure(
        'ingest-throughput',
        'Ingest throughput vs raw sendMessage',
        ratio(ingest, rawSend),
        '×',
        { atLeast: 0.85 },
        `poll → incidents ${n(ingest)}/s vs raw sendMessage ${n(rawSend)}/s (medians of ${rounds.length} round(s) of ${n(rounds[0]!.incidents)} messages, mean ${(size / 1024).toFixed(1)} KB base64, ${SEND_CONCURRENCY} in flight, raw sends before and after each poll)`,
      ),
    );
  }
  if (enrichRun) {
    const { enrich, rawReceiveSendDelete: rawRsd } = enrichRun;
    figures.push(
      figure(
        'enrich-throughput',
        'Enrich-and-route throughput vs raw receive+send+delete',
        ratio(enrich.perSecond, rawRsd.perSecond),
        '×',
        { atLeast: 0.7 },
        `enrich+route ${n(enrich.perSecond)}/s vs raw receive+send+delete ${n(rawRsd.perSecond)}/s (${n(enrichRun.events)} events in ${enrichRun.chunks} alternating chunks, consumed as host.json's batchSize ${QUEUE_BATCH} and newBatchThreshold say, routes: everything → one queue)`,
      ),
      figure(
        'extra-calls-per-event',
        'Extra Defender calls per enriched event',
        enrichRun.calls.client / enrich.routed,
        '',
        { equals: 0 },
        `${enrichRun.calls.client} call(s) for ${n(enrich.routed)} routed events, ${n(enrich.withAlerts)} holding their alerts (stand-in saw ${enrichRun.calls.standIn})`,
      ),
    );
  }
  if (rounds) {
    const enqueued = sum(rounds.map((r) => r.ingest.enqueued));
    const listCalls = sum(rounds.map((r) => r.calls.client));
    figures.push(
      figure(
        'calls-per-100-incidents',
        'Defender calls per 100 new incidents',
        (listCalls * 100) / enqueued,
        '',
        { atMost: 1.05 },
        `${listCalls} list calls (stand-in saw ${sum(rounds.map((r) => r.calls.standIn))}) for ${n(enqueued)} new incidents, runs of ≤ ${maxPagesPerRun} pages of 100`,
      ),
    );
  }
  if (graph) {
    // 50 a page: 2 calls per 100, and a final short page at most.
    figures.push(
      figure(
        'graph-calls-per-100-incidents',
        'Graph calls per 100 new incidents',
        (graph.calls.client * 100) / graph.enqueued,
        '',
        { atMost: 2.05 },
        `${graph.calls.client} list calls (stand-in saw ${graph.calls.standIn}) for ${n(graph.enqueued)} new incidents of one tenant, ${graph.runs} run(s) of ≤ ${maxPagesPerRun} pages of ${graph.pageSize}, following @odata.nextLink`,
      ),
    );
  }
  return figures;
}

/** Throughput with storage latency: the same two ratios as figures 1 and 2, behind the latency proxy. */
function latencyFigures(setting: (typeof LATENCIES)[number], rounds: IngestRound[], enrichRun: EnrichRun): Figure[] {
  const ingest = median(rounds.map((r) => r.ingest.perSecond));
  const rawSend = median(rounds.map((r) => r.rawSend.perSecond));
  const { enrich, rawReceiveSendDelete: rawRsd } = enrichRun;
  return [
    figure(
      `ingest-throughput-${setting.id}`,
      `Ingest throughput vs raw sendMessage, ${setting.label}`,
      ratio(ingest, rawSend),
      '×',
      setting.goals.ingest,
      `poll → incidents ${n(ingest)}/s vs raw sendMessage ${n(rawSend)}/s (medians of ${rounds.length} round(s) of ${n(rounds[0]!.incidents)} messages; ${setting.oneWayMs} ms added each way)`,
    ),
    figure(
      `enrich-throughput-${setting.id}`,
      `Enrich-and-route throughput vs raw receive+send+delete, ${setting.label}`,
      ratio(enrich.perSecond, rawRsd.perSecond),
      '×',
      setting.goals.enrich,
      `enrich+route ${n(enrich.perSecond)}/s vs raw receive+send+delete ${n(rawRsd.perSecond)}/s (${n(enrichRun.events)} events; ${setting.oneWayMs} ms added each way)`,
    ),
  ];
}

function instancesFigures(perInstance: InstancesBudgetRun, shared: InstancesBudgetRun): Figure[] {
  const storage = shared.storage!;
  const setting = `${shared.instances} instances, ${shared.tenants} tenants, ${shared.seconds} s of list pages, full-incident fetches and write-back as fast as the budget allows`;
  return [
    figure(
      'instances-throttled',
      `Defender 429s, ${shared.instances} instances sharing the call budget`,
      shared.throttled,
      '',
      { equals: 0 },
      `${setting}: ${n(shared.calls)} calls, ${shared.throttled} answered 429, ${n(shared.refusedByBudget)} held back by the budget; with a budget per instance instead: ${n(perInstance.calls)} calls, ${n(perInstance.throttled)} answered 429`,
    ),
    figure(
      'budget-storage-operations-per-call',
      'Storage operations per Defender call for the shared budget',
      storage.storageOperations / Math.max(1, storage.calls),
      '',
      { atMost: 1 },
      `${n(storage.storageOperations)} Table operations (reads and ETag-conditional writes, ${n(storage.races)} writes lost to another instance) for ${n(storage.calls)} calls taken`,
    ),
  ];
}

function scheduleFigures(s: ScheduleResult): Figure[] {
  const after = (values: number[]) => values.slice(1);
  const hourly = s.tokenRenewalMinutes ? 60 / s.tokenRenewalMinutes : 1;
  const hourTenants = s.polled[s.polled.length - 1]!;
  const azureHourly = (lifetimeMinutes: number) =>
    60 / (renewalIntervalMs(lifetimeMinutes * 60_000, TOKEN_REFRESH_MARGIN_MS, s.cycleMinutes * 60_000) / 60_000);
  const margin = `${TOKEN_REFRESH_MARGIN_MS / 60_000} min`;
  const full = s.polled.filter((p) => p === s.tenants).length;
  return [
    figure(
      'key-vault-reads-per-cycle',
      'Key Vault reads per poll cycle after warm-up',
      sum(after(s.keyVaultReads)) / (s.cycles - 1),
      '',
      { equals: 0 },
      `reads per cycle over a simulated hour: ${s.keyVaultReads.join(' ')} (all tenants share one secret, read when a tenant's first token is acquired)`,
    ),
    figure(
      'token-requests-per-tenant-hour',
      'Token requests per tenant per hour (steady state)',
      hourly,
      '',
      { atMost: 1 },
      (s.tokenRenewalMinutes
        ? `renewed after ${s.tokenRenewalMinutes} min (stand-in tokens live 3599 s; renewed within ${margin} of expiry)`
        : 'no renewal within the simulated hour') +
        `; ${s.tokenRequestsPerHourTenant} per tenant from minute 0 to ${(s.cycles - 1) * s.cycleMinutes} (${hourTenants} tenants); with Entra's 60-90 min tokens: ${azureHourly(90).toFixed(2)}-${azureHourly(60).toFixed(2)} per hour`,
    ),
    figure(
      'throttled-steady-state',
      `429s in steady state, ${s.tenants} tenants on the default schedule`,
      sum(after(s.throttled)),
      '',
      { equals: 0 },
      `${full} cycles of ${s.cycleMinutes} min with all ${s.tenants} tenants, then ${hourTenants} to the end of a simulated hour; ${n(sum(s.calls))} calls, 429s per cycle: ${s.throttled.join(' ')}`,
    ),
    figure(
      'schedule-cycle-seconds',
      `Real time of one poll cycle of ${s.tenants} tenants`,
      median(s.cycleSeconds.slice(1, full)),
      's',
      undefined,
      `steady-state cycles (first: ${s.cycleSeconds[0]!.toFixed(1)} s), of the ${s.cycleMinutes * 60} s between cycles; ${n(s.calls[1]! / s.tenants)} Defender call per tenant per cycle`,
    ),
  ];
}

function memoryFigure(
  b: Record<'small' | 'oneRun' | 'large' | 'smallDefaultHeap' | 'largeDefaultHeap', BacklogMemory>,
  instanceMemoryMb: number,
): Figure {
  const { small, large, oneRun } = b;
  return figure(
    'backlog-memory',
    `Peak memory, ${n(large.incidents)} vs ${n(small.incidents)} incident backlog`,
    ratio(large.peakRssBytes, small.peakRssBytes),
    '×',
    { atMost: 1.3 },
    `peak RSS ${mb(large.peakRssBytes)} MB vs ${mb(small.peakRssBytes)} MB with the heap of a ${instanceMemoryMb} MB instance (--max-old-space-size=${small.maxOldSpaceMb}; idle ${mb(small.idleRssBytes)} MB; ` +
      `peak heap ${mb(large.peakHeapUsedBytes)} vs ${mb(small.peakHeapUsedBytes)} MB; ${large.runs} vs ${small.runs} poll run(s)); one full run of ${n(oneRun.incidents)}: ${mb(oneRun.peakRssBytes)} MB RSS; ` +
      `with this machine's default heap: ${mb(b.largeDefaultHeap.peakRssBytes)} vs ${mb(b.smallDefaultHeap.peakRssBytes)} MB (${ratio(b.largeDefaultHeap.peakRssBytes, b.smallDefaultHeap.peakRssBytes).toFixed(2)}×)`,
  );
}

async function main(): Promise<void> {
  const tls = await receiveTls();
  const startedAt = new Date();
  const details: Record<string, unknown> = { plan: PLAN };
  const figures: Figure[] = [];

  log('starting Azurite and the Entra ID, Key Vault, Defender and Graph stand-ins');
  const bench = await startBenchWorld(tls);
  // Interrupted: stop Azurite (a child process) rather than leave it running.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping`);
      void bench.close().finally(() => process.exit(130));
    });
  }
  try {
    let rounds: IngestRound[] | undefined;
    if (wants('ingest-throughput', 'calls-per-100-incidents')) {
      rounds = [];
      for (let i = 1; i <= PLAN.rounds; i++) {
        log(`figure 1, round ${i}/${PLAN.rounds}: ${n(PLAN.incidents)} incidents polled between raw sends`);
        await bench.renewStorage();
        rounds.push(await runIngestRound(bench, `round-${i}`, PLAN.incidents));
      }
    }
    let enrichRun: EnrichRun | undefined;
    if (wants('enrich-throughput', 'extra-calls-per-event')) {
      log(`figure 2: ${n(PLAN.enrichEvents)} events through the enricher, alternating with raw receive+send+delete`);
      await bench.renewStorage();
      enrichRun = await runEnrich(bench, PLAN.enrichEvents, PLAN.enrichChunk);
    }
    let graphListing: GraphListing | undefined;
    if (wants('graph-calls-per-100-incidents')) {
      log(`Graph calls: a tenant read through Microsoft Graph, ${n(PLAN.incidents)} incidents polled to the end`);
      await bench.renewStorage();
      graphListing = await runGraphListing(bench, PLAN.incidents);
    }
    details.ingestRounds = rounds;
    details.enrich = enrichRun;
    details.graphListing = graphListing;
    figures.push(
      ...pipelineFigures({ rounds, enrichRun, graph: graphListing }, bench.services.config.pollMaxPagesPerRun),
    );

    const withLatency: Record<string, { rounds: IngestRound[]; enrich: EnrichRun }> = {};
    for (const setting of LATENCIES) {
      if (!wants(`ingest-throughput-${setting.id}`, `enrich-throughput-${setting.id}`)) continue;
      const latencyRounds: IngestRound[] = [];
      for (let i = 1; i <= PLAN.latencyRounds; i++) {
        log(
          `figure 3 (${setting.label}), round ${i}/${PLAN.latencyRounds}: ${n(PLAN.incidents)} incidents polled between raw sends`,
        );
        await bench.renewStorage({ oneWayLatencyMs: setting.oneWayMs });
        latencyRounds.push(await runIngestRound(bench, `${setting.id}-${i}`, PLAN.incidents));
      }
      log(
        `figure 3 (${setting.label}): ${n(PLAN.enrichEvents)} events through the enricher, alternating with raw receive+send+delete`,
      );
      await bench.renewStorage({ oneWayLatencyMs: setting.oneWayMs });
      const latencyEnrich = await runEnrich(bench, PLAN.enrichEvents, PLAN.enrichChunk);
      withLatency[setting.id] = { rounds: latencyRounds, enrich: latencyEnrich };
      figures.push(...latencyFigures(setting, latencyRounds, latencyEnrich));
    }
    details.withLatency = withLatency;

    if (wants('enrich-scale-out-latency', 'raw-scale-out-latency')) {
      const waiting = SCALE_OUT_LATENCY;
      // Chunks of whole batches for every instance (4 each): a chunk of 4 batches would give 3 instances
      // 2 rounds against 1 instance's 4, a 2× ceiling that says nothing about the relay.
      const scaleOutChunk = 4 * SCALE_OUT_INSTANCES * QUEUE_BATCH;
      const scaleOutEvents = PLAN.scaleOutChunks * scaleOutChunk;
      log(
        `figure 3b (${waiting.label}): ${n(scaleOutEvents)} events through 1 enricher instance, alternating with ${SCALE_OUT_INSTANCES} instances sharing the queue`,
      );
      await bench.renewStorage({ oneWayLatencyMs: waiting.oneWayMs });
      const scaleOut = await runEnrichInstances(bench, {
        instances: SCALE_OUT_INSTANCES,
        events: scaleOutEvents,
        chunk: scaleOutChunk,
      });
      details.scaleOut = scaleOut;
      figures.push(
        figure(
          'enrich-scale-out-latency',
          `Enrich throughput, ${SCALE_OUT_INSTANCES} instances vs 1, ${waiting.label}`,
          ratio(scaleOut.several.perSecond, scaleOut.single.perSecond),
          '×',
          { atLeast: 2.5 },
          `${n(scaleOut.several.perSecond)}/s on ${SCALE_OUT_INSTANCES} instances vs ${n(scaleOut.single.perSecond)}/s on one (${n(scaleOut.events)} events each, ${scaleOut.chunks} alternating chunks, each instance consuming as host.json says; all instances in this one process on this machine's 2 cores, beside Azurite); ` +
            `raw receive+send+delete on the same storage: ${ratio(scaleOut.raw.several.perSecond, scaleOut.raw.single.perSecond).toFixed(2)}×`,
        ),
        figure(
          'raw-scale-out-latency',
          `Raw receive+send+delete, ${SCALE_OUT_INSTANCES} consumers vs 1, ${waiting.label}`,
          ratio(scaleOut.raw.several.perSecond, scaleOut.raw.single.perSecond),
          '×',
          undefined,
          `${n(scaleOut.raw.several.perSecond)}/s on ${SCALE_OUT_INSTANCES} consumers vs ${n(scaleOut.raw.single.perSecond)}/s on one, the same messages and connections as the instances above: Azurite serves one request at a time, so this is the most the storage here lets any consumer scale`,
        ),
      );
    }

    if (
      wants(
        'key-vault-reads-per-cycle',
        'token-requests-per-tenant-hour',
        'throttled-steady-state',
        'schedule-cycle-seconds',
      )
    ) {
      log(
        `figure 4: ${PLAN.tenants} tenants on the default schedule (3 cycles), ${PLAN.hourTenants} of them for a simulated hour`,
      );
      await bench.renewStorage();
      const schedule = await runSchedule(bench, {
        tenants: PLAN.tenants,
        fullCycles: 3,
        hourTenants: PLAN.hourTenants,
        concurrency: QUEUE_BATCH,
      });
      details.schedule = schedule;
      figures.push(...scheduleFigures(schedule));
    }

    if (wants('instances-throttled', 'budget-storage-operations-per-call')) {
      const instances = { instances: 3, tenants: 50, seconds: PLAN.instancesSeconds };
      log(
        `figure 4b: ${instances.instances} instances calling Defender for ${instances.tenants} tenants for ${instances.seconds} s, a budget per instance, then one shared`,
      );
      await bench.renewStorage();
      const perInstance = await runInstancesBudget(bench, { ...instances, shared: false });
      const sharedBudget = await runInstancesBudget(bench, { ...instances, shared: true });
      details.instances = { perInstance, shared: sharedBudget };
      figures.push(...instancesFigures(perInstance, sharedBudget));
    }

    if (wants('backlog-memory')) {
      // A run holds at most maxPagesPerRun pages: the backlog of one full run shows what a run costs.
      const { instanceMemoryMb, heapMb } = instanceHeapMb();
      const [small, large] = PLAN.backlogs;
      const jobs = {
        small: [small, heapMb],
        oneRun: [bench.services.config.pollMaxPagesPerRun * 100, heapMb],
        large: [large, heapMb],
        smallDefaultHeap: [small, undefined],
        largeDefaultHeap: [large, undefined],
      } as const;
      const backlogs = {} as Record<keyof typeof jobs, BacklogMemory>;
      for (const [key, [incidents, maxOldSpaceMb]] of Object.entries(jobs) as [
        keyof typeof jobs,
        (typeof jobs)[keyof typeof jobs],
      ][]) {
        log(
          `figure 5: peak memory polling a ${n(incidents)} incident backlog in a fresh process (${maxOldSpaceMb ? `${maxOldSpaceMb} MB heap` : "this machine's default heap"})`,
        );
        await bench.renewStorage();
        backlogs[key] = await measureBacklog(bench, incidents, maxOldSpaceMb);
      }
      details.backlogs = backlogs;
      figures.push(memoryFigure(backlogs, instanceMemoryMb));
    }
  } finally {
    await bench.close();
  }

  if (wants('cold-start')) {
    log(`figure 6: cold start, median of ${PLAN.coldStartRuns} runs`);
    const cold = measureColdStart(process.cwd(), PLAN.coldStartRuns);
    const deployment = deploymentFiles(process.cwd());
    details.coldStart = { ...cold, deploymentPackage: { files: deployment.files.length, bytes: deployment.bytes } };
    figures.push(
      figure(
        'cold-start',
        'Cold start: import the deployed app vs bare node',
        ratio(cold.medianAppMs, cold.medianBareMs),
        '×',
        { atMost: 6 },
        `${n(cold.medianAppMs)} ms to start node and import ${cold.files} bundled function files vs ${n(cold.medianBareMs)} ms for node -e 0; deployment package ${deployment.files.length} files, ${(deployment.bytes / 1e6).toFixed(1)} MB unpacked`,
      ),
    );
  }

  // A figure missing from FIGURE_IDS cannot be chosen with --only.
  for (const f of figures)
    if (!(FIGURE_IDS as readonly string[]).includes(f.id)) log(`figure ${f.id} is not in FIGURE_IDS: add it`);
  // A step measures all of its figures; --only reports the ones asked for.
  const only = args.only && [...args.only];
  const flags = [...(args.quick ? ['--quick'] : []), ...(only ? [`--only ${only.join(',')}`] : [])];
  const report: BenchReport = {
    date: startedAt.toISOString(),
    command: `npm run bench${flags.length > 0 ? ` -- ${flags.join(' ')}` : ''}`,
    mode: args.quick ? 'quick' : 'full',
    ...(only ? { only } : {}),
    durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    machine: describeMachine(),
    figures: only ? figures.filter((f) => only.includes(f.id)) : figures,
    details,
  };
  console.log(formatTable(report));
  if (args.out) {
    const out = resolve(args.out);
    writeReport(out, report);
    console.log(`\nWritten to ${out}`);
  } else console.log('\nNot written: a run with --only writes its report only where --out says');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(
      `The benchmark could not measure: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
    process.exit(1);
  },
);
