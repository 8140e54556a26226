import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { AzureMonitorMetricExporter } from '@azure/monitor-opentelemetry-exporter';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { beforeAll, describe, expect, it } from 'vitest';
import { settingsSchema } from '../../shared/config/config.js';
import { DIMENSIONS, FAILED_POLL_OUTCOME, METRICS } from '../../shared/telemetry/telemetry-names.js';
import {
  evaluate,
  loadInfra,
  params,
  parts,
  prop,
  properties,
  resources,
  stringLiteral,
  UNKNOWN,
  vars,
  type BicepFile,
  type Infra,
  type Node,
  type ResourceDecl,
  type Value,
} from '../support/bicep.js';

/**
 * The KQL of the alert rules and of the workbook against the names the code emits
 * (shared/telemetry/telemetry-names.ts) and against what the Azure Monitor exporter really sends: every metric
 * name and dimension a query uses exists, every query reads `customMetrics`, each of the five alerts
 * is there, splits as it should and notifies the action group.
 */

const METRIC_NAMES: readonly string[] = Object.values(METRICS);
const DIMENSION_NAMES: readonly string[] = Object.values(DIMENSIONS);

// ---- what a query uses -----------------------------------------------------------------------------

/** The quoted strings of a KQL fragment ('…' or "…"). */
function kqlStrings(fragment: string): string[] {
  return [...fragment.matchAll(/'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1] ?? m[2]!);
}

/** Metric names a query compares `name` with: `name == '…'`, `name =~ '…'`, `name in ('…', …)`. */
function metricNamesIn(kql: string): string[] {
  const found: string[] = [];
  for (const m of kql.matchAll(/\bname\s*(?:==|=~)\s*('[^']*'|"[^"]*")/g)) found.push(...kqlStrings(m[1]!));
  for (const m of kql.matchAll(/\bname\s+in~?\s*\(([^)]*)\)/g)) found.push(...kqlStrings(m[1]!));
  return found;
}

/** Dimensions a query reads: `customDimensions.X`, `customDimensions['X']`, `customDimensions["X"]`. */
function dimensionsIn(kql: string): string[] {
  return [...kql.matchAll(/\bcustomDimensions\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(?:'([^']*)'|"([^"]*)")\s*\])/g)].map(
    (m) => m[1] ?? m[2] ?? m[3]!,
  );
}

/** Everything wrong with one query's names; empty when it is right. */
function problemsOf(kql: string): string[] {
  const problems: string[] = [];
  const metrics = metricNamesIn(kql);
  if (metrics.length === 0) problems.push('compares `name` with no metric name');
  for (const name of metrics)
    if (!METRIC_NAMES.includes(name))
      problems.push(`metric '${name}' is not in METRICS (shared/telemetry/telemetry-names.ts)`);
  // Any other spelling of a metric (`has 'relay.…'`, a let of names): each literal of the relay's own.
  for (const literal of kqlStrings(kql).filter((s) => s.startsWith('relay.')))
    if (!METRIC_NAMES.includes(literal)) problems.push(`'${literal}' looks like a metric name but is not in METRICS`);
  for (const dimension of dimensionsIn(kql))
    if (!DIMENSION_NAMES.includes(dimension))
      problems.push(`dimension '${dimension}' is not in DIMENSIONS (shared/telemetry/telemetry-names.ts)`);
  const mentions = kql.match(/\bcustomDimensions\b/g)?.length ?? 0;
  if (mentions !== dimensionsIn(kql).length)
    problems.push("reads customDimensions other than by a named dimension (customDimensions.X or ['X'])");
  if (!/^\s*(let\s+\w+\s*=\s*)?customMetrics\b/m.test(kql) && !/\bcustomMetrics\s*\n?\s*\|/.test(kql))
    problems.push('does not read the customMetrics table');
  for (const table of ['AppMetrics', 'customEvents', 'traces', 'requests', 'dependencies', 'exceptions', 'union'])
    if (new RegExp(`\\b${table}\\b`).test(kql)) problems.push(`reads ${table}: the metrics are in customMetrics only`);
  return problems;
}

// ---- the alert rules -----------------------------------------------------------------------------

interface AlertRule {
  /** Where it is declared and which item of its loop, for messages. */
  label: string;
  file: BicepFile;
  resource: ResourceDecl;
  query: string;
  /** The value of a property of the rule's body (`properties.severity`), a loop item's field followed. */
  value(path: string): Value;
  /** The expression behind that value, as written. */
  node(path: string): Node | undefined;
  dimensions: string[];
}

/** The object items of a resource loop's collection (a var or an array literal), or one undefined. */
function loopItems(file: BicepFile, resource: ResourceDecl): (Node | undefined)[] {
  if (!resource.loop) return [undefined];
  let collection = resource.loop.collection;
  if (collection.type === 'identifier') collection = vars(file).get(collection.text) ?? collection;
  if (collection.type !== 'array') throw new Error(`${file.name}: cannot read the items of ${resource.symbol}'s loop`);
  return parts(collection);
}

function alertRules(infra: Infra): AlertRule[] {
  return infra.files.flatMap((file) =>
    resources(file)
      .filter((r) => r.type === 'Microsoft.Insights/scheduledQueryRules' && !r.existing)
      .flatMap((resource) =>
        loopItems(file, resource).map((item, index): AlertRule => {
          /** A loop item's field (`rule.query`) is the item's property; anything else is itself. */
          const follow = (expression: Node | undefined): Node | undefined => {
            const field = resource.loop && expression?.text.match(new RegExp(`^${resource.loop.item}\\.(\\w+)$`));
            return field && item ? properties(item).get(field[1]!) : expression;
          };
          const node = (path: string) => follow(prop(resource.body, path));
          const value = (path: string): Value => {
            const found = node(path);
            return found ? evaluate(found, file) : UNKNOWN;
          };
          const criteria = prop(resource.body, 'properties.criteria.allOf');
          const conditions = criteria?.type === 'array' ? parts(criteria) : [];
          if (conditions.length !== 1)
            throw new Error(`${file.name}: ${resource.symbol} needs exactly one condition (criteria.allOf)`);
          const queryNode = follow(properties(conditions[0]!).get('query'));
          const query = queryNode && stringLiteral(queryNode);
          const label = `${file.name}: ${resource.symbol}${item ? `[${index}] (${item.text.match(/key: '([^']+)'/)?.[1] ?? index})` : ''}`;
          if (query === undefined) throw new Error(`${label}: its query is not a string the test can read`);
          // dimensions: an array of { name: '…' }, or [for d in <item>.dimensions: { name: d }].
          const dimensionsNode = properties(conditions[0]!).get('dimensions');
          let dimensions: string[] = [];
          if (dimensionsNode?.type === 'for_statement') {
            const [variable, collection, body] = parts(dimensionsNode);
            const names = evaluate(follow(collection)!, file);
            expect(prop(body, 'name')?.text, `${label}: each dimension is named by the loop`).toBe(variable!.text);
            dimensions = Array.isArray(names) ? (names as string[]) : [];
          } else if (dimensionsNode?.type === 'array') {
            dimensions = parts(dimensionsNode).map((d) => String(evaluate(prop(d, 'name')!, file)));
          }
          for (const condition of ['query', 'metricMeasureColumn', 'operator', 'threshold', 'timeAggregation'])
            expect(properties(conditions[0]!).has(condition), `${label}: criteria.allOf[0].${condition}`).toBe(true);
          const conditionValue = (key: string) => {
            const found = follow(properties(conditions[0]!).get(key));
            return found ? evaluate(found, file) : UNKNOWN;
          };
          return {
            label,
            file,
            resource,
            query,
            value: (path) => (path.startsWith('criteria.') ? conditionValue(path.slice(9)) : value(path)),
            node: (path) =>
              path.startsWith('criteria.') ? follow(properties(conditions[0]!).get(path.slice(9))) : node(path),
            dimensions,
          };
        }),
      ),
  );
}

// ---- the workbook --------------------------------------------------------------------------------

interface WorkbookQuery {
  label: string;
  query: string;
  resourceType: unknown;
}

/** Every log query of every workbook's serializedData (a JSON file under infra/, loadTextContent). */
function workbookQueries(infra: Infra): { files: string[]; queries: WorkbookQuery[] } {
  const files: string[] = [];
  const queries: WorkbookQuery[] = [];
  for (const file of infra.files) {
    for (const workbook of resources(file).filter((r) => r.type === 'Microsoft.Insights/workbooks' && !r.existing)) {
      const data = prop(workbook.body, 'properties.serializedData');
      const load = data?.text.match(/loadTextContent\('([^']+)'\)/);
      expect(
        load,
        `${file.name}: ${workbook.symbol}'s serializedData comes from a file (loadTextContent)`,
      ).toBeTruthy();
      const path = resolve(dirname(file.path), load![1]!);
      files.push(path);
      const json = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      const visit = (node: unknown, where: string) => {
        if (Array.isArray(node)) node.forEach((child, i) => visit(child, `${where}[${i}]`));
        else if (node && typeof node === 'object') {
          const object = node as Record<string, unknown>;
          // queryType 0 is a log (KQL) query; other types (ARM, metrics, JSON) carry no KQL.
          if (typeof object.query === 'string' && object.queryType === 0)
            queries.push({
              label: `${load![1]}: ${typeof object.title === 'string' ? object.title : where}`,
              query: object.query,
              resourceType: object.resourceType,
            });
          for (const [key, child] of Object.entries(object)) visit(child, `${where}.${key}`);
        }
      };
      visit(json, '$');
    }
  }
  return { files, queries };
}

// ---- tests ---------------------------------------------------------------------------------------

let infra: Infra;
let rules: AlertRule[];
beforeAll(async () => {
  infra = await loadInfra();
  rules = alertRules(infra);
});

describe('the name checks themselves', () => {
  const good = `customMetrics
| where name == '${METRICS.queueDepth}'
| extend queue = tostring(customDimensions.queue), tenant = tostring(customDimensions['tenant'])
| summarize max(valueSum) by queue, tenant`;

  it('pass a query that uses known names', () => {
    expect(metricNamesIn(good)).toEqual([METRICS.queueDepth]);
    expect(dimensionsIn(good)).toEqual(['queue', 'tenant']);
    expect(problemsOf(good)).toEqual([]);
  });

  it('report a misspelled metric, in ==, in (…) or any other literal, and a misspelled dimension', () => {
    expect(problemsOf(good.replace(METRICS.queueDepth, 'relay.queue.depht'))).toEqual([
      "metric 'relay.queue.depht' is not in METRICS (shared/telemetry/telemetry-names.ts)",
      "'relay.queue.depht' looks like a metric name but is not in METRICS",
    ]);
    expect(
      problemsOf(
        good.replace(`name == '${METRICS.queueDepth}'`, `name in ("${METRICS.queueDepth}", 'relay.events.rooted')`),
      ),
    ).toContain("metric 'relay.events.rooted' is not in METRICS (shared/telemetry/telemetry-names.ts)");
    expect(problemsOf(`${good}\n| where tostring(customDimensions) has 'relay.poll.durations'`)).toEqual([
      "'relay.poll.durations' looks like a metric name but is not in METRICS",
      "reads customDimensions other than by a named dimension (customDimensions.X or ['X'])",
    ]);
    expect(problemsOf(good.replace("customDimensions['tenant']", "customDimensions['tennant']"))).toEqual([
      "dimension 'tennant' is not in DIMENSIONS (shared/telemetry/telemetry-names.ts)",
    ]);
  });

  it('report a query on another table, or one that names no metric', () => {
    expect(problemsOf(good.replace('customMetrics', 'AppMetrics'))).toEqual([
      'does not read the customMetrics table',
      'reads AppMetrics: the metrics are in customMetrics only',
    ]);
    expect(problemsOf('customMetrics\n| summarize count() by name')).toEqual(['compares `name` with no metric name']);
  });
});

describe('the exporter puts the metrics where the queries read them', () => {
  // @azure/monitor-opentelemetry-exporter (src/utils/metricUtils.ts, src/export/metric.ts): one
  // MetricData envelope per data point and export, which Application Insights stores as a
  // `customMetrics` row: name, value (valueSum), count (valueCount), min and max (valueMin, valueMax),
  // properties (customDimensions).
  interface Envelope {
    name: string;
    time: Date;
    data: {
      baseType: string;
      baseData: {
        metrics: { name: string; value: number; count?: number; min?: number; max?: number }[];
        properties: Record<string, unknown>;
      };
    };
  }

  it('sends a counter as its increase over the interval, a gauge as its value, a histogram as count, sum, min and max', async () => {
    // No statsbeat or SDK stats of the exporter's own: nothing leaves this process.
    process.env.APPLICATION_INSIGHTS_NO_STATSBEAT = 'true';
    process.env.APPLICATIONINSIGHTS_SDKSTATS_DISABLED = 'true';
    const exporter = new AzureMonitorMetricExporter({
      connectionString:
        'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://127.0.0.1:9/',
      disableOfflineStorage: true,
    });
    const batches: Envelope[][] = [];
    // The HTTP sender replaced by one that keeps what would be sent.
    (exporter as unknown as { _sender: unknown })._sender = {
      exportEnvelopes: (envelopes: Envelope[]) => {
        batches.push(envelopes);
        return Promise.resolve({ code: 0 });
      },
      shutdown: () => Promise.resolve(),
    };
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const provider = new MeterProvider({ readers: [reader] });
    const tenant = '11111111-2222-3333-4444-555555555555';
    try {
      const meter = provider.getMeter('defender-relay');
      const calls = meter.createCounter(METRICS.defenderCalls);
      const depth = meter.createGauge(METRICS.queueDepth);
      const polls = meter.createHistogram(METRICS.pollDuration);
      calls.add(3, { [DIMENSIONS.tenant]: tenant, [DIMENSIONS.status]: 429 });
      depth.record(7, { [DIMENSIONS.queue]: 'incidents-poison' });
      polls.record(100, { [DIMENSIONS.tenant]: tenant, [DIMENSIONS.outcome]: FAILED_POLL_OUTCOME });
      polls.record(300, { [DIMENSIONS.tenant]: tenant, [DIMENSIONS.outcome]: FAILED_POLL_OUTCOME });
      await reader.forceFlush();
      calls.add(2, { [DIMENSIONS.tenant]: tenant, [DIMENSIONS.status]: 429 });
      await reader.forceFlush();
    } finally {
      await provider.shutdown();
    }

    const [first, second] = batches;
    for (const envelope of [...first!, ...second!]) {
      expect(envelope.name).toBe('Microsoft.ApplicationInsights.Metric');
      expect(envelope.data.baseType).toBe('MetricData');
      expect(envelope.data.baseData.metrics).toHaveLength(1);
    }
    // One export's rows share one timestamp (the poll-failures alert relies on it).
    expect(new Set(first!.map((e) => e.time.getTime())).size).toBe(1);
    const point = (envelopes: Envelope[], name: string) => {
      const found = envelopes.filter((e) => e.data.baseData.metrics[0]!.name === name);
      expect(found, name).toHaveLength(1);
      return { ...found[0]!.data.baseData.metrics[0]!, properties: found[0]!.data.baseData.properties };
    };
    expect(point(first!, METRICS.defenderCalls)).toMatchObject({
      value: 3,
      count: 1,
      properties: { tenant, status: '429' }, // attributes go out as strings: the queries compare with '429'
    });
    expect(point(first!, METRICS.queueDepth)).toMatchObject({
      value: 7,
      count: 1,
      properties: { queue: 'incidents-poison' },
    });
    expect(point(first!, METRICS.pollDuration)).toMatchObject({
      value: 400,
      count: 2,
      min: 100,
      max: 300,
      properties: { tenant, outcome: FAILED_POLL_OUTCOME },
    });
    // Delta temporality: the second export holds the counter's increase since the first, and no
    // gauge or histogram point that was not recorded again.
    expect(point(second!, METRICS.defenderCalls)).toMatchObject({ value: 2, count: 1 });
    expect(second!).toHaveLength(1);
  });
});

describe('alert rules', () => {
  it('every query uses only the metric and dimension names the code emits, from customMetrics', () => {
    expect(rules.length).toBeGreaterThan(0);
    const problems = rules.flatMap((rule) => problemsOf(rule.query).map((p) => `${rule.label}: ${p}`));
    expect(problems).toEqual([]);
  });

  /** The rule whose query reads this metric (exactly one). */
  function ruleFor(metric: string): AlertRule {
    const found = rules.filter((r) => metricNamesIn(r.query).includes(metric));
    expect(
      found.map((r) => r.label),
      `one alert rule on ${metric}`,
    ).toHaveLength(1);
    return found[0]!;
  }

  it('has the five alerts, each on its metric, split so that it names the queue or the tenant', () => {
    const expected = [
      { what: 'a poison queue not empty', metric: METRICS.queueDepth, split: DIMENSIONS.queue },
      { what: 'three failed polls in a row', metric: METRICS.pollDuration, split: DIMENSIONS.tenant },
      { what: 'checkpoint lag', metric: METRICS.checkpointLag, split: DIMENSIONS.tenant },
      { what: 'a burst of Defender or Graph 429s', metric: METRICS.defenderCalls, split: DIMENSIONS.tenant },
      { what: 'dead letters growing', metric: METRICS.eventsDeadLettered, split: DIMENSIONS.queue },
    ];
    expect(rules).toHaveLength(expected.length);
    for (const { what, metric, split } of expected) {
      const rule = ruleFor(metric);
      expect(rule.dimensions, `${what}: ${rule.label} splits by ${split}`).toEqual([split]);
      // The dimension and the measure are columns of the query's result.
      const measure = rule.value('criteria.metricMeasureColumn');
      expect(typeof measure, `${rule.label}: metricMeasureColumn`).toBe('string');
      expect(rule.query, `${rule.label}: the query computes ${String(measure)}`).toMatch(
        new RegExp(`\\b${String(measure)}\\s*=`),
      );
      expect(rule.query, `${rule.label}: the query's result has a ${split} column`).toMatch(
        new RegExp(`\\bby ${split}\\b`),
      );
      expect(rule.query, `${rule.label}: AggregatedValue is reserved in alert queries`).not.toMatch(/AggregatedValue/);
    }
  });

  it('a poison queue: the latest depth of each -poison queue above 0', () => {
    const rule = ruleFor(METRICS.queueDepth);
    expect(rule.query).toMatch(/where queue endswith '-poison'/);
    expect(rule.query).toMatch(/arg_max\(timestamp, valueSum\) by queue/);
    expect([rule.value('criteria.operator'), rule.value('criteria.threshold')]).toEqual(['GreaterThan', 0]);
  });

  it(`three polls in a row: at least 3 '${FAILED_POLL_OUTCOME}' outcomes since the tenant's last other outcome`, () => {
    const rule = ruleFor(METRICS.pollDuration);
    expect(rule.query).toContain(`outcome != '${FAILED_POLL_OUTCOME}'`);
    expect(rule.query).toContain(`outcome == '${FAILED_POLL_OUTCOME}'`);
    expect(rule.query).toMatch(/sum\(valueCount\)/); // polls, not export rows
    expect([rule.value('criteria.operator'), rule.value('criteria.threshold')]).toEqual(['GreaterThanOrEqual', 3]);
  });

  it("checkpoint lag: above three poll intervals, the interval a parameter that defaults to the app's schedule", () => {
    const rule = ruleFor(METRICS.checkpointLag);
    expect(rule.value('criteria.operator')).toBe('GreaterThan');
    expect(rule.node('criteria.threshold')?.text).toBe('3 * pollIntervalMinutes * 60 + pollOverlapSeconds'); // seconds, past the poll's overlap
    // The parameter's default is the interval of POLL_SCHEDULE's default, in the app and in main.bicep.
    const everyMinutes = (ncrontab: string) => {
      const [second, minute, ...rest] = ncrontab.split(' ');
      expect([second, ...rest], `${ncrontab}: every N minutes on the minute`).toEqual(['0', '*', '*', '*', '*']);
      return Number(/^\*\/(\d+)$/.exec(minute!)?.[1]);
    };
    const inApp = everyMinutes(settingsSchema.shape.POLL_SCHEDULE.parse(undefined));
    const pollSchedule = params(infra.main).find((p) => p.name === 'pollSchedule')!;
    expect(everyMinutes(evaluate(pollSchedule.defaultValue!, infra.main) as string)).toBe(inApp);
    const interval = params(infra.main).find((p) => p.name === 'pollIntervalMinutes');
    expect(evaluate(interval!.defaultValue!, infra.main), "main.bicep's pollIntervalMinutes").toBe(inApp);
    expect(prop(infra.mainModule('core/alerts.bicep').body, 'params.pollIntervalMinutes')?.text).toBe(
      'pollIntervalMinutes',
    );
    const inModule = params(rule.file).find((p) => p.name === 'pollIntervalMinutes');
    expect(evaluate(inModule!.defaultValue!, rule.file)).toBe(inApp);
  });

  it("Defender and Graph 429s: the tenant's 429 answers over the window, from a threshold parameter", () => {
    const rule = ruleFor(METRICS.defenderCalls);
    // A tenant read through Graph is throttled by Graph: the same rule counts its 429s.
    expect(ruleFor(METRICS.graphCalls)).toBe(rule);
    expect(rule.query).toMatch(/where status == '429'/);
    expect(rule.query).toMatch(/sum\(valueSum\) by tenant/);
    expect(rule.value('criteria.operator')).toBe('GreaterThanOrEqual');
    expect(rule.node('criteria.threshold')?.type).toBe('identifier');
  });

  it('dead letters: the messages dead-lettered per queue over the window, above a threshold parameter', () => {
    const rule = ruleFor(METRICS.eventsDeadLettered);
    expect(rule.query).toMatch(/sum\(valueSum\) by queue/);
    expect(rule.value('criteria.operator')).toBe('GreaterThan');
    expect(rule.node('criteria.threshold')?.type).toBe('identifier');
  });

  it('every alert notifies the action group, unconditionally', () => {
    for (const rule of rules) {
      const groups = prop(rule.resource.body, 'properties.actions.actionGroups');
      expect(groups?.type, `${rule.label}: actions.actionGroups`).toBe('array');
      const referenced = parts(groups!).map((g) => g.text.match(/^(\w+)\.id$/)?.[1]);
      const actionGroups = resources(rule.file).filter((r) => r.type === 'Microsoft.Insights/actionGroups');
      expect(referenced, `${rule.label}: notifies ${actionGroups.map((g) => g.symbol).join()}`).toEqual(
        actionGroups.map((g) => g.symbol),
      );
      expect(actionGroups, `${rule.file.name}: one action group, created here`).toHaveLength(1);
      expect(actionGroups[0]!.existing).toBe(false);
      expect(actionGroups[0]!.condition, 'the action group is always created (with or without receivers)').toBe(
        undefined,
      );
      expect(rule.resource.condition, `${rule.label} is always created`).toBeUndefined();
    }
  });

  it('every alert is a log search alert on the Application Insights component, with a severity, schedule, auto-mitigation and what to do', () => {
    // Log search alert windows (minutes) the service takes: Azure/azure-rest-api-specs#21258.
    const WINDOWS = [
      'PT5M',
      'PT10M',
      'PT15M',
      'PT30M',
      'PT45M',
      'PT1H',
      'PT2H',
      'PT3H',
      'PT4H',
      'PT5H',
      'PT6H',
      'P1D',
      'P2D',
    ];
    for (const rule of rules) {
      expect(evaluate(prop(rule.resource.body, 'kind')!, rule.file), rule.label).toBe('LogAlert');
      const scopes = prop(rule.resource.body, 'properties.scopes');
      const scope = scopes && parts(scopes).map((s) => s.text.match(/^(\w+)\.id$/)?.[1]);
      const component = resources(rule.file).find((r) => r.symbol === scope?.[0]);
      expect(component?.type, `${rule.label}: scoped to the component`).toBe('Microsoft.Insights/components');
      expect([0, 1, 2, 3, 4], `${rule.label}: severity`).toContain(rule.value('properties.severity'));
      expect(WINDOWS.concat('PT1M'), `${rule.label}: evaluationFrequency`).toContain(
        rule.value('properties.evaluationFrequency'),
      );
      const window = rule.value('properties.windowSize');
      if (window === UNKNOWN) {
        // Computed (the per-tenant window): every duration it can be is one the service takes.
        const expression = vars(rule.file).get(rule.node('properties.windowSize')!.text);
        const durations = expression ? [...expression.text.matchAll(/'(P[^']+)'/g)].map((m) => m[1]) : [];
        expect(durations.length, `${rule.label}: windowSize's choices`).toBeGreaterThan(0);
        for (const d of durations) expect(WINDOWS, `${rule.label}: windowSize ${d}`).toContain(d);
      } else {
        expect(WINDOWS, `${rule.label}: windowSize`).toContain(window);
      }
      expect(rule.value('properties.autoMitigate'), `${rule.label}: autoMitigate`).toBe(true);
      expect(rule.value('properties.enabled'), `${rule.label}: enabled`).toBe(true);
      expect(rule.value('criteria.timeAggregation'), `${rule.label}: timeAggregation`).toBe('Maximum');
      const description = rule.value('properties.description');
      expect(typeof description === 'string' && description.length > 150, `${rule.label}: a description`).toBe(true);
      expect(String(description), `${rule.label}: the description says what to do`).toMatch(
        /\b(Run|Open|Check|Look|Fix|fix)\b/,
      );
      expect(typeof rule.value('properties.displayName'), `${rule.label}: displayName`).toBe('string');
    }
  });
});

describe('the workbook', () => {
  it('loads its JSON from a file, its queries on the component, each with known metric and dimension names from customMetrics', () => {
    const { files, queries } = workbookQueries(infra);
    expect(files).toHaveLength(1);
    expect(queries.length).toBeGreaterThanOrEqual(6);
    const problems = queries.flatMap((q) => problemsOf(q.query).map((p) => `${q.label}: ${p}`));
    expect(problems).toEqual([]);
    for (const q of queries) expect(q.resourceType, q.label).toBe('microsoft.insights/components');
  });

  it('shows the per-tenant table and the flow, per destination and per reason, latency and queue depths', () => {
    const { queries } = workbookQueries(infra);
    const using = (metrics: string[], dimensions: string[] = []) =>
      queries.filter(
        (q) =>
          metrics.every((m) => metricNamesIn(q.query).includes(m)) &&
          dimensions.every((d) => dimensionsIn(q.query).includes(d)),
      );
    const tenantTable = using(
      [
        METRICS.pollDuration,
        METRICS.checkpointLag,
        METRICS.eventsEnqueued,
        METRICS.eventsRouted,
        METRICS.defenderCalls,
        METRICS.graphCalls,
        METRICS.defenderBudgetUsed,
        METRICS.graphBudgetUsed,
      ],
      [DIMENSIONS.tenant, DIMENSIONS.outcome, DIMENSIONS.status],
    );
    expect(tenantTable, 'a per-tenant table').toHaveLength(1);
    expect(tenantTable[0]!.query).toContain(`outcome == '${FAILED_POLL_OUTCOME}'`);
    expect(tenantTable[0]!.query).toContain("status == '429'");
    expect(
      using([METRICS.incidentsListed, METRICS.eventsEnqueued, METRICS.eventsRouted], [DIMENSIONS.destination]),
      'listed, enqueued, routed per destination',
    ).not.toHaveLength(0);
    expect(
      using([METRICS.eventsDeadLettered, METRICS.eventsPoisoned], [DIMENSIONS.reason, DIMENSIONS.queue]),
      'dead-lettered and poisoned per reason',
    ).not.toHaveLength(0);
    const latency = using([METRICS.deliveryLatency], [DIMENSIONS.destination]);
    expect(latency, 'delivery latency per destination').not.toHaveLength(0);
    expect(latency[0]!.query).toMatch(/percentilew?\(/);
    expect(using([METRICS.queueDepth], [DIMENSIONS.queue]), 'queue depths').not.toHaveLength(0);
  });

  it("is the component's: sourceId and the fallback resource are the component", () => {
    const file = infra.file('core/workbook.bicep');
    const [workbook] = resources(file).filter((r) => r.type === 'Microsoft.Insights/workbooks');
    const component = resources(file).find((r) => r.type === 'Microsoft.Insights/components');
    expect(component?.existing).toBe(true);
    expect(prop(workbook!.body, 'properties.sourceId')?.text).toBe(`${component!.symbol}.id`);
    expect(prop(workbook!.body, 'properties.serializedData')?.text).toContain(`${component!.symbol}.id`);
    const json = JSON.parse(readFileSync(workbookQueries(infra).files[0]!, 'utf8')) as {
      fallbackResourceIds: string[];
    };
    expect(json.fallbackResourceIds).toEqual(['__APPLICATION_INSIGHTS_ID__']);
  });
});

describe('wiring', () => {
  it('main.bicep deploys the alerts and the workbook on the component it creates, receivers from azd', () => {
    const componentName = prop(infra.mainModule('core/monitoring.bicep').body, 'params.applicationInsightsName')?.text;
    for (const source of ['core/alerts.bicep', 'core/workbook.bicep'])
      expect(prop(infra.mainModule(source).body, 'params.applicationInsightsName')?.text, source).toBe(componentName);
    const file = JSON.parse(readFileSync(resolve(dirname(infra.main.path), 'main.parameters.json'), 'utf8')) as {
      parameters: Record<string, { value: unknown }>;
    };
    // Unset, azd leaves them out (an empty action group); set, a JSON array (azd 1.23.4 and later).
    expect(file.parameters.alertEmailAddresses?.value).toBe('${ALERT_EMAIL_ADDRESSES}');
    expect(file.parameters.alertWebhookUrls?.value).toBe('${ALERT_WEBHOOK_URLS}');
    for (const name of ['alertEmailAddresses', 'alertWebhookUrls']) {
      const param = params(infra.main).find((p) => p.name === name);
      expect(param?.type, name).toBe('string[]');
      expect(evaluate(param!.defaultValue!, infra.main), `${name} is optional`).toEqual([]);
    }
  });
});
