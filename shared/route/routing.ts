import { resolve } from 'node:path';
import * as z from 'zod';
import type { AppConfig } from '../config/config.js';
import {
  ConfigFileError,
  fieldProblemsError,
  formatFieldPath,
  inlineProblemsError,
  readJsonConfigFile,
  zodFieldProblems,
  type FieldPath,
  type FieldProblem,
  type JsonConfigFile,
} from '../config/config-file.js';
import { HUNTING_MAX_ROWS_LIMIT, unknownPlaceholderProblems } from '../enrich/enrichment.js';
import {
  CLASSIFICATIONS,
  DETERMINATIONS,
  INCIDENT_STATUSES,
  isRecord as isObject,
  SEVERITIES,
} from '../sources/defender/incident-types.js';
import { DEFAULT_SENTINEL_STREAM } from './destinations/sentinel-columns.js';
import { checkDestinationUrl, DestinationBlockedError, type DestinationPolicy } from './ssrf.js';

/**
 * Routing rules: which destinations an enriched incident event goes to. The file is validated as a
 * whole and every problem is reported at once, naming the file, the line, the rule (or destination)
 * and the field: `ROUTES_FILE /abs/routes.json:12:5: rules[2] "teams-high": match.severity[0]: must be one of …`.
 * Matching is pure: `selectRoutes` reads only the event.
 */

const DETERMINATION_SYNONYMS: string[][] = [
  ['confirmeduseractivity', 'confirmedactivity'],
  ['compromiseduser', 'compromisedaccount'],
  ['clean', 'notmalicious'],
  // NoEnoughDataToValidate is the incident update page's own spelling (Defender's API); Graph's schema says notEnoughDataToValidate.
  ['insufficientdata', 'notenoughdatatovalidate', 'noenoughdatatovalidate'],
];

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$/;
const nameSchema = z
  .string()
  .regex(NAME, 'must be 1-80 letters, digits, dots, dashes, colons or underscores, starting with a letter or digit');

/** Azure queue names: 3-63 characters, lowercase letters, digits and single dashes, starting and ending with a letter or digit. */
export const QUEUE_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;
const queueName = z
  .string()
  .regex(
    QUEUE_NAME,
    'must be an Azure queue name: 3-63 lowercase letters, digits and single dashes, starting and ending with a letter or digit',
  );
const secretName = z
  .string()
  .regex(/^[0-9a-zA-Z-]{1,127}$/, 'must be a Key Vault secret name (letters, digits and dashes)');
const httpsUrl = z.string().refine((v) => URL.canParse(v) && v.startsWith('https://'), 'must be an https:// URL');
/** A data collection rule's `immutableId`, what the Logs Ingestion API's URL names (`dcr-` and 32 hex digits). */
export const DCR_IMMUTABLE_ID = /^dcr-[0-9a-f]{32}$/;
/** A custom stream of a data collection rule ("must begin with Custom-": data-collection-rule-structure.md). */
const STREAM_NAME = /^Custom-[A-Za-z0-9_]{1,100}$/;

const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { message: `must be one of ${values.join(', ')}` });
const nonEmptyList = <T extends z.ZodType>(item: T) => z.array(item).min(1, 'must list at least one value');

/** A webhook-style destination's URL: in the file, or (since Teams and Slack URLs are secrets) in Key Vault. */
const urlFields = { url: httpsUrl.optional(), urlSecretName: secretName.optional() };

const destinationSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('queue'), queueName, accountUrl: httpsUrl.optional() }),
    z.strictObject({ type: z.literal('webhook'), ...urlFields, hmacSecretName: secretName.optional() }),
    z.strictObject({ type: z.literal('teams'), ...urlFields }),
    z.strictObject({ type: z.literal('slack'), ...urlFields }),
    z.strictObject({
      type: z.literal('sentinel'),
      endpoint: httpsUrl.refine(
        (v) => !URL.canParse(v) || (new URL(v).search === '' && new URL(v).hash === ''),
        'must be the logs ingestion URL alone (https://<name>.<region>-1.ingest.monitor.azure.com), without a query',
      ),
      ruleId: z
        .string()
        .regex(
          DCR_IMMUTABLE_ID,
          "must be the data collection rule's immutable id, dcr- and 32 hex digits (not its resource id or name)",
        ),
      streamName: z
        .string()
        .regex(STREAM_NAME, 'must be a custom stream name: Custom- then letters, digits and underscores')
        .default(DEFAULT_SENTINEL_STREAM),
    }),
    z.strictObject({ type: z.literal('drop') }),
  ],
  { message: 'must be one of queue, webhook, teams, slack, sentinel, drop' },
);

const mitrePattern = z
  .string()
  .regex(
    /^T[0-9*?]{1,4}(\.[0-9*?]{1,3}|\*)?$/i,
    'must be a MITRE technique id like T1003 or T1059.001, or a glob like T1059.*',
  );

const matchSchema = z.strictObject({
  tenant: nonEmptyList(z.string().min(1, 'must not be empty')).optional(),
  severity: nonEmptyList(oneOf(SEVERITIES)).optional(),
  status: nonEmptyList(oneOf(INCIDENT_STATUSES)).optional(),
  classification: nonEmptyList(oneOf(CLASSIFICATIONS)).optional(),
  determination: nonEmptyList(oneOf(DETERMINATIONS)).optional(),
  serviceSource: nonEmptyList(z.string().min(1, 'must not be empty')).optional(),
  tags: nonEmptyList(z.string().min(1, 'must not be empty')).optional(),
  mitreTechnique: nonEmptyList(mitrePattern).optional(),
  minPriority: z
    .number({ message: 'must be a number' })
    .min(0, 'must be between 0 and 100')
    .max(100, 'must be between 0 and 100')
    .optional(),
});

const writeBackSchema = z.union(
  [
    z.strictObject({ tag: z.string().min(1).max(100, 'must be at most 100 characters') }),
    z.strictObject({ comment: z.string().min(1).max(1000, 'must be at most 1000 characters') }),
  ],
  { message: 'must be { "tag": "…" } or { "comment": "…" }' },
);

const huntingSchema = z
  .strictObject({
    name: nameSchema,
    query: z.string().min(1, 'must not be empty').max(10_000, 'must be at most 10000 characters'),
    maxRows: z.number().int().min(1).max(HUNTING_MAX_ROWS_LIMIT).optional(),
  })
  // Unknown {placeholders} fail when the file loads, not as a note on every event.
  .superRefine((spec, ctx) => {
    for (const message of unknownPlaceholderProblems(spec.query))
      ctx.addIssue({ code: 'custom', path: ['query'], message });
  });

const routeFields = {
  destinations: z
    .array(nameSchema, { message: 'must be a list of destination names' })
    .min(1, 'must name at least one destination'),
  writeBack: writeBackSchema.optional(),
  hunting: z.array(huntingSchema).optional(),
};

const ruleSchema = z.strictObject({
  name: nameSchema,
  match: matchSchema.default({}),
  mode: z.enum(['first-match', 'fan-out'], { message: 'must be first-match or fan-out' }).default('first-match'),
  ...routeFields,
});

const defaultRouteSchema = z.strictObject(routeFields);

export type Destination = z.infer<typeof destinationSchema>;
export type DestinationType = Destination['type'];
export type RuleMatch = z.infer<typeof matchSchema>;
export type WriteBack = z.infer<typeof writeBackSchema>;
export type HuntingQuery = z.infer<typeof huntingSchema>;
export type RoutingRule = z.infer<typeof ruleSchema>;

/** A destination with its name, as deliveries and errors refer to it. */
export type NamedDestination = Destination & { name: string };

export const DEFAULT_ROUTE_NAME = 'default';

export interface RoutingTable {
  destinations: ReadonlyMap<string, NamedDestination>;
  rules: readonly RoutingRule[];
  defaultRoute: { destinations: string[]; writeBack?: WriteBack; hunting?: HuntingQuery[] };
  /** Where the table came from (a file path, or `(inline)`), for messages. */
  source: string;
}

export interface MatchedRoute {
  /** The rule's name, or `default` when no rule matched. */
  name: string;
  destinations: string[];
  writeBack?: WriteBack;
  hunting?: HuntingQuery[];
}

/**
 * Routing rules that cannot be used. `problems` name the line (for a file), the field and what is
 * wrong; the message holds one line per problem (see config-file.ts).
 */
export class RoutingConfigError extends ConfigFileError {
  constructor(error: ConfigFileError) {
    super(error.file, error.problems, error.setting);
    this.name = 'RoutingConfigError';
  }

  /** Where the rules came from (a file path, or `(inline)`). */
  get source(): string {
    return this.file;
  }
}

export const ROUTES_SETTING = 'ROUTES_FILE';

/** Names a problem inside a rule or destination: `rules[2] "teams-high": match.severity[0]`. */
function labelled(where: string): (path: FieldPath) => string {
  return (path) => (path.length > 0 ? `${where}: ${formatFieldPath(path)}` : where);
}

/**
 * Reads and validates routing rules (a path to a JSON file, or the parsed object) and compiles them.
 * Webhook, Teams and Slack URLs written in the file, and Sentinel (Logs Ingestion) endpoints, must be on the
 * allow-list (checked again at send time).
 * Throws `RoutingConfigError` listing every problem, with its line when the rules come from a file.
 */
export function loadRoutingRules(
  input: string | unknown,
  policy: Pick<DestinationPolicy, 'allowedHosts'> & Partial<DestinationPolicy>,
): RoutingTable {
  let file: JsonConfigFile | undefined;
  if (typeof input === 'string') {
    try {
      file = readJsonConfigFile(input, ROUTES_SETTING);
    } catch (err) {
      throw err instanceof ConfigFileError ? new RoutingConfigError(err) : err;
    }
  }
  const source = file?.path ?? '(inline)';
  const problems: FieldProblem[] = [];
  const table = compile(
    file ? file.value : input,
    source,
    { allowedHosts: policy.allowedHosts, allowLoopback: policy.allowLoopback ?? false },
    problems,
  );
  if (problems.length > 0 || !table)
    throw new RoutingConfigError(file ? fieldProblemsError(file, problems) : inlineProblemsError(source, problems));
  return table;
}

const tables = new Map<string, RoutingTable>();

/**
 * The routing table of this process: `ROUTES_FILE` (resolved against the working directory, the app's
 * directory) read and compiled once, on first use; the start-up check, the health check and the
 * enricher share it. A file that fails is not remembered, so each caller reports it afresh.
 */
export function routingTableFor(routing: AppConfig['routing']): RoutingTable {
  const path = resolve(routing.routesFile);
  const key = JSON.stringify([path, routing.allowedHosts, routing.allowLoopback]);
  let table = tables.get(key);
  if (!table) {
    table = loadRoutingRules(path, routing);
    tables.set(key, table);
  }
  return table;
}

function compile(
  raw: unknown,
  source: string,
  policy: DestinationPolicy,
  problems: FieldProblem[],
): RoutingTable | undefined {
  const problem = (path: FieldPath, field: string | undefined, message: string) =>
    problems.push({ path, field, message });
  if (!isObject(raw)) {
    problem([], undefined, 'must be a JSON object with "destinations", "rules" and "defaultRoute"');
    return undefined;
  }

  const unknownKeys = Object.keys(raw).filter(
    (k) => !['destinations', 'rules', 'defaultRoute', '$schema', 'description'].includes(k),
  );
  if (unknownKeys.length > 0)
    problem(
      [unknownKeys[0]!],
      undefined,
      `unknown top-level field${unknownKeys.length > 1 ? 's' : ''} ${unknownKeys.map((k) => `"${k}"`).join(', ')}`,
    );

  const destinations = new Map<string, NamedDestination>();
  if (!isObject(raw.destinations))
    problem(['destinations'], 'destinations', 'must be an object mapping destination names to destinations');
  else {
    for (const [name, value] of Object.entries(raw.destinations)) {
      const where = `destinations "${name}"`;
      const at: FieldPath = ['destinations', name];
      if (!NAME.test(name))
        problem(
          at,
          where,
          'the name must be 1-80 letters, digits, dots, dashes, colons or underscores, starting with a letter or digit',
        );
      const parsed = destinationSchema.safeParse(value);
      if (!parsed.success) {
        problems.push(...zodFieldProblems(parsed.error, at, labelled(where)));
        continue;
      }
      const destination = parsed.data;
      const checkHost = (field: 'url' | 'endpoint', url: string) => {
        try {
          checkDestinationUrl(url, policy);
        } catch (err) {
          if (!(err instanceof DestinationBlockedError)) throw err;
          problem([...at, field], `${where}: ${field}`, `${err.reason} (host ${err.host})`);
        }
      };
      if (destination.type === 'webhook' || destination.type === 'teams' || destination.type === 'slack') {
        if ((destination.url === undefined) === (destination.urlSecretName === undefined)) {
          problem(at, where, 'give exactly one of url and urlSecretName');
        }
        if (destination.url !== undefined) checkHost('url', destination.url);
      }
      // The Logs Ingestion endpoint gets the app's bearer token for Azure Monitor: the same allow-list as webhooks decides where it may go.
      if (destination.type === 'sentinel') checkHost('endpoint', destination.endpoint);
      destinations.set(name, { ...destination, name });
    }
  }

  const rules: RoutingRule[] = [];
  if (!Array.isArray(raw.rules)) problem(['rules'], 'rules', 'must be a list of rules (it may be empty)');
  else {
    const seen = new Map<string, number>();
    raw.rules.forEach((value: unknown, index) => {
      const name = isObject(value) && typeof value.name === 'string' ? value.name : undefined;
      const where = name === undefined ? `rules[${index}]` : `rules[${index}] "${name}"`;
      const at: FieldPath = ['rules', index];
      const parsed = ruleSchema.safeParse(value);
      if (!parsed.success) {
        problems.push(...zodFieldProblems(parsed.error, at, labelled(where)));
        return;
      }
      const rule = parsed.data;
      if (rule.name === DEFAULT_ROUTE_NAME)
        problem([...at, 'name'], `${where}: name`, `"${DEFAULT_ROUTE_NAME}" is reserved for defaultRoute`);
      const earlier = seen.get(rule.name);
      if (earlier !== undefined) problem([...at, 'name'], `${where}: name`, `already used by rules[${earlier}]`);
      seen.set(rule.name, index);
      problems.push(...unknownDestinations(rule.destinations, destinations, raw.destinations, at, where));
      rules.push(rule);
    });
  }

  let defaultRoute: RoutingTable['defaultRoute'] | undefined;
  if (raw.defaultRoute === undefined) {
    // Stryker disable next-line ArrayDeclaration: an absent field is placed at the top of the file whatever the path
    problem([], 'defaultRoute', 'is required (use a "drop" destination to discard unmatched events)');
  } else {
    const parsed = defaultRouteSchema.safeParse(raw.defaultRoute);
    if (!parsed.success) problems.push(...zodFieldProblems(parsed.error, ['defaultRoute'], labelled('defaultRoute')));
    else {
      defaultRoute = parsed.data;
      problems.push(
        ...unknownDestinations(
          parsed.data.destinations,
          destinations,
          raw.destinations,
          ['defaultRoute'],
          'defaultRoute',
        ),
      );
    }
  }

  if (problems.length > 0 || !defaultRoute) return undefined;
  return { destinations, rules, defaultRoute, source };
}

function unknownDestinations(
  names: string[],
  valid: Map<string, NamedDestination>,
  declared: unknown,
  at: FieldPath,
  where: string,
): FieldProblem[] {
  return names.flatMap((name, i) => {
    if (valid.has(name)) return [];
    // A destination that is declared but invalid has its own error already.
    if (isObject(declared) && name in declared) return [];
    return [
      {
        path: [...at, 'destinations', i],
        field: `${where}: destinations[${i}]`,
        message: `no destination named "${name}" (declared: ${[...valid.keys()].join(', ') || 'none'})`,
      },
    ];
  });
}

/** The queue names a table sends to in the app's own storage account (to create them up front). */
export function queueNamesOf(table: RoutingTable): string[] {
  return [...table.destinations.values()].flatMap((d) => (d.type === 'queue' && !d.accountUrl ? [d.queueName] : []));
}

/** What routing reads from an enriched event. */
export interface RoutableEvent {
  tenantId: string;
  incident: Record<string, unknown>;
  enrichment: {
    priority: number;
    tenantDisplayName?: string | null;
    serviceSources?: string[];
    mitre?: { techniques?: string[] };
    [key: string]: unknown;
  };
}

const strings = (value: unknown): string[] =>
  // Stryker disable next-line ArrayDeclaration: a field that is not a list has no values; a placeholder value could only match a rule naming it
  Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];

function canonicalDetermination(value: string): string {
  const v = value.toLowerCase();
  return DETERMINATION_SYNONYMS.find((group) => group.includes(v))?.[0] ?? v;
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

const globCache = new Map<string, RegExp>();
function matchesGlob(value: string, glob: string): boolean {
  let re = globCache.get(glob);
  // Stryker disable next-line ConditionalExpression: the cache only saves compiling again; a fresh RegExp (no g flag) matches the same
  if (!re) {
    re = globToRegExp(glob);
    globCache.set(glob, re);
  }
  return re.test(value);
}

/** Values of a field across the incident's alerts (when enrichment did not provide them). */
function fromAlerts(incident: Record<string, unknown>, field: string): string[] {
  // Stryker disable next-line ArrayDeclaration: a placeholder in place of the alerts is not an object, so filtered out below
  const alerts = Array.isArray(incident.alerts) ? (incident.alerts as unknown[]) : [];
  return alerts.filter(isObject).flatMap((alert) => strings([alert[field]].flat()));
}

/** Whether every field of `match` holds for the event (fields AND, values within a field OR; case-insensitive). */
export function ruleMatches(match: RuleMatch, event: RoutableEvent): boolean {
  const { incident, enrichment } = event;
  const anyOf = (wanted: readonly string[] | undefined, actual: string[]) => {
    if (!wanted) return true;
    const have = new Set(actual.map((a) => a.toLowerCase()));
    return wanted.some((w) => have.has(w.toLowerCase()));
  };
  const scalar = (value: unknown) => strings([value]);

  if (!anyOf(match.tenant, strings([event.tenantId, enrichment.tenantDisplayName]))) return false;
  if (!anyOf(match.severity, scalar(incident.severity))) return false;
  if (!anyOf(match.status, scalar(incident.status))) return false;
  if (!anyOf(match.classification, scalar(incident.classification))) return false;
  if (match.determination) {
    const actual = incident.determination;
    if (
      typeof actual !== 'string' ||
      !match.determination.some((d) => canonicalDetermination(d) === canonicalDetermination(actual))
    )
      return false;
  }
  if (!anyOf(match.serviceSource, enrichment.serviceSources ?? fromAlerts(incident, 'serviceSource'))) return false;
  if (!anyOf(match.tags, strings(incident.tags))) return false;
  if (match.mitreTechnique) {
    const techniques = enrichment.mitre?.techniques ?? fromAlerts(incident, 'mitreTechniques');
    if (!match.mitreTechnique.some((glob) => techniques.some((t) => matchesGlob(t, glob)))) return false;
  }
  if (match.minPriority !== undefined && !(enrichment.priority >= match.minPriority)) return false;
  return true;
}

/**
 * The routes an event takes: rules in order; a matching `first-match` rule ends the evaluation, a
 * matching `fan-out` rule adds its destinations and evaluation goes on; nothing matched → the default route.
 */
export function selectRoutes(table: RoutingTable, event: RoutableEvent): MatchedRoute[] {
  const matched: MatchedRoute[] = [];
  for (const rule of table.rules) {
    if (!ruleMatches(rule.match, event)) continue;
    matched.push(routeOf(rule.name, rule));
    if (rule.mode === 'first-match') break;
  }
  return matched.length > 0 ? matched : [routeOf(DEFAULT_ROUTE_NAME, table.defaultRoute)];
}

function routeOf(
  name: string,
  route: { destinations: string[]; writeBack?: WriteBack; hunting?: HuntingQuery[] },
): MatchedRoute {
  return {
    name,
    destinations: [...route.destinations],
    ...(route.writeBack && { writeBack: route.writeBack }),
    ...(route.hunting && { hunting: route.hunting }),
  };
}

/**
 * One delivery per destination: when two matched rules name the same destination, the first rule
 * that named it owns the delivery, so a destination receives an event once.
 */
export function plannedDeliveries(routes: readonly MatchedRoute[]): { route: MatchedRoute; destination: string }[] {
  const seen = new Set<string>();
  return routes.flatMap((route) =>
    route.destinations.flatMap((destination) => {
      if (seen.has(destination)) return [];
      seen.add(destination);
      return [{ route, destination }];
    }),
  );
}
