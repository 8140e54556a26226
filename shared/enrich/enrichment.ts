import { BudgetSpentError, type BudgetClass } from '../sources/call-budget.js';
import { HuntingRefusedError, type HuntingResult } from '../sources/defender/client.js';
import type { IncidentApiClient } from '../sources/incident-api.js';
import { describeError } from '../telemetry/redact.js';
import { PermanentError, RetryableError } from '../errors.js';
import {
  ALERT_STATUSES,
  INCIDENT_STATUSES,
  RISK_SCORES,
  SEVERITIES,
  alertsOf,
  incidentIdOf,
  isRecord,
  knownName,
  recordsOf,
  textOf,
  type RiskScore,
  type Severity,
} from '../sources/defender/incident-types.js';
import { scorePriority } from './priority.js';
import type { Tenant } from '../tenants/tenants.js';
import { normalizeTimestamp } from '../timestamps.js';

/**
 * What the relay adds to an incident before routing it, kept in an `enrichment` object beside the
 * incident, which is never changed. `deriveEnrichment` reads only the incident (no API call) and
 * never throws, whatever a webhook pushed; `enrichWithApi` adds what needs the Defender API — the
 * full incident when the event holds no alerts (following a merge), and the advanced-hunting queries
 * a route asks for — spending optional calls only while the tenant's call budget allows.
 */

/** At most this many items per entity kind, so a huge incident stays a small message. */
export const ENTITY_CAP = 50;
/** A merge target may have been merged again: fetch at most this many incidents following redirects. */
export const MAX_REDIRECT_HOPS = 3;
export const DEFAULT_HUNTING_MAX_ROWS = 50;
export const HUNTING_MAX_ROWS_LIMIT = 1000;

export interface UserSummary {
  accountName: string | null;
  domainName: string | null;
  userPrincipalName: string | null;
  aadUserId: string | null;
}

export interface DeviceSummary {
  mdatpDeviceId: string | null;
  deviceDnsName: string | null;
  osPlatform: string | null;
  riskScore: string | null;
  healthStatus: string | null;
}

export interface FileHashSummary {
  sha1: string | null;
  sha256: string | null;
  fileName: string | null;
}

export interface MailboxSummary {
  mailboxAddress: string | null;
  mailboxDisplayName: string | null;
}

export type EntityKind = 'users' | 'devices' | 'ips' | 'urls' | 'fileHashes' | 'mailboxes';

export interface EntitySummary {
  users: UserSummary[];
  devices: DeviceSummary[];
  ips: string[];
  urls: string[];
  fileHashes: FileHashSummary[];
  mailboxes: MailboxSummary[];
  /** True when some kind held more than `ENTITY_CAP` distinct items (the first ones are kept). */
  truncated: boolean;
  /** Distinct items per kind before the cap. */
  totals: Record<EntityKind, number>;
}

export interface HuntingOutcome {
  rows: Record<string, unknown>[];
  /** Rows the query returned, before `maxRows`. */
  rowCount: number;
  truncated: boolean;
}

/** An ATT&CK enterprise tactic: `{ id: 'TA0001', name: 'Initial Access' }`. */
export type MitreTactic = { id: string; name: string };

/** A type, not an interface, so it fits records typed `{ [key: string]: unknown }` (routing reads it so). */
export type Enrichment = {
  tenantId: string;
  tenantDisplayName: string | null;
  incidentId: number | null;
  /** The incident in the Microsoft Defender portal. */
  portalUrl: string | null;
  alertCount: number;
  /** Alerts with status New or InProgress. */
  activeAlertCount: number;
  /** Distinct, lowest first; the incident's own severity included. */
  severities: Severity[];
  highestSeverity: Severity | null;
  serviceSources: string[];
  detectionSources: string[];
  /**
   * Techniques: distinct ids, sorted. Tactics: the alert categories that are ATT&CK tactics, once
   * each, in the matrix's order (Reconnaissance first, Impact last).
   */
  mitre: { techniques: string[]; tactics: MitreTactic[] };
  /** The alert categories that are not ATT&CK tactics (Malware, SuspiciousActivity…), sorted, once each; `None` is no category. */
  categories: string[];
  entities: EntitySummary;
  /** Earliest alert firstActivity / latest alert lastActivity, with seven fractional digits. */
  firstActivity: string | null;
  lastActivity: string | null;
  /** 0..100, see `shared/enrich/priority.ts`. */
  priority: number;
  priorityReasons: string[];
  /** The event holds no alerts: the full incident (or the one it was merged into) must be fetched. */
  needsFullIncident: boolean;
  /** The incident this one was merged into, when it was. */
  redirectedTo: { incidentId: number; portalUrl: string } | null;
  /** Advanced-hunting results by query name. */
  hunting: Record<string, HuntingOutcome>;
  /** What could not be done, and why (a skipped query, a missing permission…). */
  notes: string[];
};

export interface EnrichmentContext {
  tenantId: string;
  tenantDisplayName?: string;
}

export function portalUrlFor(incidentId: number, tenantId: string): string {
  return `https://security.microsoft.com/incidents/${incidentId}?tid=${encodeURIComponent(tenantId)}`;
}

/** The enrichment that needs no API call. Never throws and never changes `incident`. */
export function deriveEnrichment(incident: unknown, context: EnrichmentContext): Enrichment {
  const source = isRecord(incident) ? incident : {};
  const alerts = alertsOf(source);
  const incidentId = incidentIdOf(source.incidentId) ?? null;
  const redirectId = incidentIdOf(source.redirectIncidentId);

  const severities = new Set<Severity>();
  const incidentSeverity = knownName(SEVERITIES, source.severity);
  if (incidentSeverity) severities.add(incidentSeverity);
  const serviceSources = new Set<string>();
  const detectionSources = new Set<string>();
  const techniques = new Set<string>();
  const categories = new CategoryCollector();
  let activeAlertCount = 0;
  let firstActivity: string | undefined;
  let lastActivity: string | undefined;
  const entities = new EntityCollector();

  for (const alert of alerts) {
    const status = knownName(ALERT_STATUSES, alert.status);
    if (status === 'New' || status === 'InProgress') activeAlertCount += 1;
    const severity = knownName(SEVERITIES, alert.severity);
    if (severity) severities.add(severity);
    addText(serviceSources, alert.serviceSource);
    addText(detectionSources, alert.detectionSource);
    categories.add(alert.category);
    for (const technique of techniquesOf(alert.mitreTechniques)) techniques.add(technique);
    const first = timestampOf(alert.firstActivity);
    if (first && (firstActivity === undefined || first < firstActivity)) firstActivity = first;
    const last = timestampOf(alert.lastActivity);
    if (last && (lastActivity === undefined || last > lastActivity)) lastActivity = last;
    for (const device of recordsOf(alert.devices)) entities.addDevice(device);
    for (const entity of recordsOf(alert.entities)) entities.addEntity(entity);
  }

  const ordered = SEVERITIES.filter((s) => severities.has(s));
  const highestSeverity = ordered[ordered.length - 1] ?? null;
  const priority = scorePriority({
    // Without a severity of its own, the incident is as severe as its worst alert.
    severity: incidentSeverity ?? highestSeverity ?? undefined,
    severityFrom: incidentSeverity ? 'incident' : 'alerts',
    highestDeviceRisk: entities.highestRisk,
    alertCount: alerts.length,
    status: knownName(INCIDENT_STATUSES, source.status),
  });

  return {
    tenantId: context.tenantId,
    tenantDisplayName: context.tenantDisplayName ?? null,
    incidentId,
    portalUrl: incidentId === null ? null : portalUrlFor(incidentId, context.tenantId),
    alertCount: alerts.length,
    activeAlertCount,
    severities: ordered,
    highestSeverity,
    serviceSources: sorted(serviceSources),
    detectionSources: sorted(detectionSources),
    mitre: { techniques: sorted(techniques), tactics: categories.tactics() },
    categories: categories.others(),
    entities: entities.summary(),
    firstActivity: firstActivity ?? null,
    lastActivity: lastActivity ?? null,
    priority: priority.score,
    priorityReasons: priority.reasons,
    needsFullIncident: alerts.length === 0,
    redirectedTo:
      redirectId === undefined || redirectId === incidentId
        ? null
        : { incidentId: redirectId, portalUrl: portalUrlFor(redirectId, context.tenantId) },
    hunting: {},
    notes: [],
  };
}

function addText(set: Set<string>, value: unknown): void {
  const text = textOf(value);
  if (text) set.add(text);
}

function sorted(set: Set<string>): string[] {
  return [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The ATT&CK enterprise tactics, in the matrix's order, each with the spelling of Defender's alert
 * `category` that names it. Defender documents its categories as "aligned to the MITRE ATT&CK
 * framework" but mixes tactics with other kinds (Malware, SuspiciousActivity…):
 * - Defender XDR, List incidents API, alert `category` (example: Impact):
 *   https://learn.microsoft.com/defender-xdr/api-list-incidents
 * - Defender for Endpoint, Create alert API, the `category` values: General, CommandAndControl,
 *   Collection, CredentialAccess, DefenseEvasion, Discovery, Exfiltration, Exploit, Execution,
 *   InitialAccess, LateralMovement, Malware, Persistence, PrivilegeEscalation, Ransomware,
 *   SuspiciousActivity: https://learn.microsoft.com/defender-endpoint/api/create-alert-by-reference
 * - ATT&CK's tactic ids, names and order: github.com/mitre/cti, enterprise-attack/x-mitre-tactic/*.json
 *   and x-mitre-matrix/x-mitre-matrix--eafc1b4c-5e56-4965-bd4e-66a6a89c88cc.json (tactic_refs), at
 *   commit 8543c5b05bd9bbcace9fc37f30bba96b675b6f33; https://attack.mitre.org/tactics/enterprise/
 * In 2026 ATT&CK renamed TA0005 "Stealth" and split "Defense Impairment" (TA0112) off it. Defender's
 * DefenseEvasion predates the split and covers both, so TA0005 keeps the name Defender means, and
 * the ATT&CK spellings are recognised too.
 */
const TACTICS: readonly (MitreTactic & { categories: readonly string[] })[] = [
  { id: 'TA0043', name: 'Reconnaissance', categories: ['Reconnaissance'] },
  { id: 'TA0042', name: 'Resource Development', categories: ['ResourceDevelopment'] },
  { id: 'TA0001', name: 'Initial Access', categories: ['InitialAccess'] },
  { id: 'TA0002', name: 'Execution', categories: ['Execution'] },
  { id: 'TA0003', name: 'Persistence', categories: ['Persistence'] },
  { id: 'TA0004', name: 'Privilege Escalation', categories: ['PrivilegeEscalation'] },
  { id: 'TA0005', name: 'Defense Evasion', categories: ['DefenseEvasion', 'Stealth'] },
  { id: 'TA0112', name: 'Defense Impairment', categories: ['DefenseImpairment'] },
  { id: 'TA0006', name: 'Credential Access', categories: ['CredentialAccess'] },
  { id: 'TA0007', name: 'Discovery', categories: ['Discovery'] },
  { id: 'TA0008', name: 'Lateral Movement', categories: ['LateralMovement'] },
  { id: 'TA0009', name: 'Collection', categories: ['Collection'] },
  { id: 'TA0011', name: 'Command and Control', categories: ['CommandAndControl'] },
  { id: 'TA0010', name: 'Exfiltration', categories: ['Exfiltration'] },
  { id: 'TA0040', name: 'Impact', categories: ['Impact'] },
];

/** Categories that are not tactics, in Defender's spelling: the Create alert API's, and UnwantedSoftware (not in that list; Defender's spelling of it as a determination). */
const OTHER_CATEGORIES = ['General', 'Exploit', 'Malware', 'Ransomware', 'SuspiciousActivity', 'UnwantedSoftware'];

/** Case, spaces, dashes and underscores aside: `Initial Access`, `initial-access` and `INITIALACCESS` are one key. */
const categoryKey = (text: string) => text.toLowerCase().replace(/[\s_-]+/g, '');

/** A Map, not an object: a category such as `constructor` must not find anything inherited. */
const TACTIC_BY_KEY = new Map<string, number>(
  TACTICS.flatMap((tactic, rank) =>
    [tactic.id, tactic.name, ...tactic.categories].map((spelling) => [categoryKey(spelling), rank] as const),
  ),
);
const OTHER_BY_KEY = new Map(OTHER_CATEGORIES.map((category) => [categoryKey(category), category]));

/** Alert categories split into ATT&CK tactics and the rest. */
class CategoryCollector {
  readonly #tactics = new Set<number>();
  /** Case-folded category → the spelling kept. */
  readonly #others = new Map<string, string>();

  add(value: unknown): void {
    const text = textOf(value);
    if (text === undefined) return;
    const key = categoryKey(text);
    const tactic = TACTIC_BY_KEY.get(key);
    if (tactic !== undefined) {
      this.#tactics.add(tactic);
      return;
    }
    const folded = text.toLowerCase();
    if (folded === 'none') return; // Defender's "no category"
    const spelling = OTHER_BY_KEY.get(key) ?? text;
    const kept = this.#others.get(folded);
    // Of two spellings of an unknown category, the smaller one, so alert order does not change the message.
    if (kept === undefined || spelling < kept) this.#others.set(folded, spelling);
  }

  /** Fresh objects each time: a message's tactics are its own. */
  tactics(): MitreTactic[] {
    return [...this.#tactics]
      .sort((a, b) => a - b)
      .map((rank) => ({ id: TACTICS[rank]!.id, name: TACTICS[rank]!.name }));
  }

  others(): string[] {
    return sorted(new Set(this.#others.values()));
  }
}

const TECHNIQUE = /^T\d{4}(?:\.\d{3})?$/i;

/** MITRE technique ids from a list (or, tolerated, one string such as `T1003, T1059.001`). */
function techniquesOf(value: unknown): string[] {
  const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(/[\s,;]+/) : [];
  return items
    .map(textOf)
    .filter((t): t is string => t !== undefined && TECHNIQUE.test(t))
    .map((t) => t.toUpperCase());
}

/** A timestamp normalised to seven fractional digits (so strings compare in time order), or undefined. */
function timestampOf(value: unknown): string | undefined {
  const text = textOf(value);
  if (!text) return undefined;
  try {
    return normalizeTimestamp(text);
  } catch {
    return undefined;
  }
}

const RISK_RANK: Record<RiskScore, number> = { None: 0, Informational: 1, Low: 2, Medium: 3, High: 4 };

/**
 * Distinct items of one kind in first-seen order, at most `cap` kept. An item may be known by
 * several keys (a user by object id, UPN or account): any shared key makes two sightings one item,
 * whose missing fields the later sighting fills.
 */
class CappedList<T extends object> {
  readonly items: T[] = [];
  /** Key → the kept item, or null for an item counted past the cap. */
  readonly #byKey = new Map<string, T | null>();
  total = 0;

  constructor(private readonly cap: number) {}

  add(keys: string[], item: T, merge: (kept: T, seen: T) => void = fillMissing): void {
    if (keys.length === 0) return;
    const known = keys.find((key) => this.#byKey.has(key));
    if (known !== undefined) {
      const kept = this.#byKey.get(known) ?? null;
      if (kept) merge(kept, item);
      for (const key of keys) if (!this.#byKey.has(key)) this.#byKey.set(key, kept);
      return;
    }
    this.total += 1;
    const kept = this.items.length < this.cap ? item : null;
    if (kept) this.items.push(kept);
    for (const key of keys) this.#byKey.set(key, kept);
  }

  get truncated(): boolean {
    return this.total > this.items.length;
  }
}

function fillMissing<T extends object>(kept: T, seen: T): void {
  const target = kept as Record<string, unknown>;
  for (const [field, value] of Object.entries(seen))
    if (target[field] === null && value !== null) target[field] = value;
}

const lower = (text: string | undefined) => text?.toLowerCase();
const keyed = (prefix: string, text: string | undefined) => (text === undefined ? [] : [`${prefix}:${text}`]);

class EntityCollector {
  readonly users = new CappedList<UserSummary>(ENTITY_CAP);
  readonly devices = new CappedList<DeviceSummary>(ENTITY_CAP);
  readonly ips = new CappedList<{ value: string }>(ENTITY_CAP);
  readonly urls = new CappedList<{ value: string }>(ENTITY_CAP);
  readonly fileHashes = new CappedList<FileHashSummary>(ENTITY_CAP);
  readonly mailboxes = new CappedList<MailboxSummary>(ENTITY_CAP);
  /** Over every device, kept or not: the priority must not depend on the cap. */
  highestRisk: RiskScore | undefined;

  addDevice(device: Record<string, unknown>): void {
    const id = textOf(device.mdatpDeviceId) ?? textOf(device.deviceId) ?? textOf(device.DeviceId);
    const dnsName = textOf(device.deviceDnsName);
    const risk = knownName(RISK_SCORES, device.riskScore);
    if (risk && (this.highestRisk === undefined || RISK_RANK[risk] > RISK_RANK[this.highestRisk]))
      this.highestRisk = risk;
    this.devices.add(
      [...keyed('id', lower(id)), ...keyed('dns', lower(dnsName))],
      {
        mdatpDeviceId: id ?? null,
        deviceDnsName: dnsName ?? null,
        osPlatform: textOf(device.osPlatform) ?? null,
        riskScore: risk ?? textOf(device.riskScore) ?? null,
        healthStatus: textOf(device.healthStatus) ?? null,
      },
      mergeDevice,
    );
  }

  addEntity(entity: Record<string, unknown>): void {
    const type = textOf(entity.entityType)?.toLowerCase();
    if (type === 'user') {
      const user: UserSummary = {
        accountName: textOf(entity.accountName) ?? null,
        domainName: textOf(entity.domainName) ?? null,
        userPrincipalName: textOf(entity.userPrincipalName) ?? null,
        aadUserId: textOf(entity.aadUserId) ?? null,
      };
      const account = user.accountName ? `${user.domainName ?? ''}\\${user.accountName}` : undefined;
      this.users.add(
        [
          ...keyed('aad', lower(user.aadUserId ?? undefined)),
          ...keyed('upn', lower(user.userPrincipalName ?? undefined)),
          ...keyed('account', lower(account)),
        ],
        user,
      );
    }
    // The other kinds are read from their fields, whatever the type is called: the fields are what matter.
    const ip = textOf(entity.ipAddress);
    if (ip) this.ips.add(keyed('ip', ip.toLowerCase()), { value: ip });
    const url = textOf(entity.url);
    if (url) this.urls.add(keyed('url', url), { value: url });
    const sha1 = textOf(entity.sha1);
    const sha256 = textOf(entity.sha256);
    if (sha1 || sha256) {
      this.fileHashes.add([...keyed('sha256', lower(sha256)), ...keyed('sha1', lower(sha1))], {
        sha1: sha1 ?? null,
        sha256: sha256 ?? null,
        fileName: textOf(entity.fileName) ?? null,
      });
    }
    const mailbox = textOf(entity.mailboxAddress);
    if (mailbox)
      this.mailboxes.add(keyed('mailbox', mailbox.toLowerCase()), {
        mailboxAddress: mailbox,
        mailboxDisplayName: textOf(entity.mailboxDisplayName) ?? null,
      });
  }

  summary(): EntitySummary {
    const lists = {
      users: this.users,
      devices: this.devices,
      ips: this.ips,
      urls: this.urls,
      fileHashes: this.fileHashes,
      mailboxes: this.mailboxes,
    };
    return {
      users: this.users.items,
      devices: this.devices.items,
      ips: this.ips.items.map((i) => i.value),
      urls: this.urls.items.map((u) => u.value),
      fileHashes: this.fileHashes.items,
      mailboxes: this.mailboxes.items,
      truncated: Object.values(lists).some((list) => list.truncated),
      totals: Object.fromEntries(Object.entries(lists).map(([kind, list]) => [kind, list.total])) as Record<
        EntityKind,
        number
      >,
    };
  }
}

/** The same device seen in several alerts: fill what is missing and keep its highest risk. */
function mergeDevice(kept: DeviceSummary, seen: DeviceSummary): void {
  const keptRisk = knownName(RISK_SCORES, kept.riskScore);
  const seenRisk = knownName(RISK_SCORES, seen.riskScore);
  if (seenRisk && (!keptRisk || RISK_RANK[seenRisk] > RISK_RANK[keptRisk])) kept.riskScore = seenRisk;
  fillMissing(kept, seen);
}

// ---------------------------------------------------------------------------------------------
// Advanced-hunting queries

/** A query a route asks for. Placeholders such as `{deviceNames}` become KQL string lists. */
export interface HuntingQuerySpec {
  /** Names the result: `enrichment.hunting[name]`. */
  name: string;
  /** KQL, e.g. `DeviceLogonEvents | where DeviceName in ({deviceNames}) | take 20`. */
  query: string;
  /** Rows kept in the message (default 50, at most 1000). */
  maxRows?: number;
}

/** The placeholders a query may use, each filled from the incident's entities. */
export const HUNTING_PLACEHOLDERS: Record<
  string,
  { description: string; values: (entities: EntitySummary) => (string | null)[] }
> = {
  deviceNames: { description: "the devices' DNS names", values: (e) => e.devices.map((d) => d.deviceDnsName) },
  deviceIds: { description: "the devices' Defender ids", values: (e) => e.devices.map((d) => d.mdatpDeviceId) },
  accountNames: { description: "the users' account names", values: (e) => e.users.map((u) => u.accountName) },
  userPrincipalNames: { description: "the users' UPNs", values: (e) => e.users.map((u) => u.userPrincipalName) },
  aadUserIds: { description: "the users' Entra object ids", values: (e) => e.users.map((u) => u.aadUserId) },
  ips: { description: 'the IP addresses', values: (e) => e.ips },
  urls: { description: 'the URLs', values: (e) => e.urls },
  sha1s: { description: 'the files’ SHA-1 hashes', values: (e) => e.fileHashes.map((f) => f.sha1) },
  sha256s: { description: 'the files’ SHA-256 hashes', values: (e) => e.fileHashes.map((f) => f.sha256) },
  fileNames: { description: 'the file names', values: (e) => e.fileHashes.map((f) => f.fileName) },
  mailboxAddresses: { description: 'the mailbox addresses', values: (e) => e.mailboxes.map((m) => m.mailboxAddress) },
};

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9]*)\}/g;
const HUNTING_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_QUERY_LENGTH = 10_000;

/** What is wrong with a query spec, each problem naming the field (empty when it is fine). For the routes file. */
export function huntingSpecProblems(spec: unknown): string[] {
  if (!isRecord(spec)) return ['must be an object with name and query'];
  const problems: string[] = [];
  if (typeof spec.name !== 'string' || !HUNTING_NAME.test(spec.name))
    problems.push('name: must be 1-64 letters, digits, dots, dashes or underscores');
  if (typeof spec.query !== 'string' || spec.query.trim() === '')
    problems.push('query: must be a non-empty KQL string');
  else {
    if (spec.query.length > MAX_QUERY_LENGTH) problems.push(`query: must be at most ${MAX_QUERY_LENGTH} characters`);
    problems.push(...unknownPlaceholderProblems(spec.query).map((p) => `query: ${p}`));
  }
  if (
    spec.maxRows !== undefined &&
    !(
      Number.isInteger(spec.maxRows) &&
      (spec.maxRows as number) >= 1 &&
      (spec.maxRows as number) <= HUNTING_MAX_ROWS_LIMIT
    )
  ) {
    problems.push(`maxRows: must be an integer from 1 to ${HUNTING_MAX_ROWS_LIMIT}`);
  }
  return problems;
}

/** One problem per {placeholder} in the query that enrichment cannot fill. */
export function unknownPlaceholderProblems(query: string): string[] {
  return placeholdersIn(query)
    .filter((name) => !Object.hasOwn(HUNTING_PLACEHOLDERS, name))
    .map(
      (name) =>
        `unknown placeholder {${name}} (known: ${Object.keys(HUNTING_PLACEHOLDERS)
          .map((p) => `{${p}}`)
          .join(', ')})`,
    );
}

function placeholdersIn(query: string): string[] {
  return [...new Set([...query.matchAll(PLACEHOLDER)].map((m) => m[1] as string))];
}

/** A KQL string literal: double-quoted, with backslash, quote and line breaks escaped, other control characters dropped. */
export function kqlString(value: string): string {
  const escaped = value
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/\r/g, '\\r')
    .replace(/\n/g, '\\n')
    .replace(/\t/g, '\\t')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f]/g, '');
  return `"${escaped}"`;
}

/**
 * The query with each placeholder replaced by a KQL list of distinct values (`"a","b"`), or why it
 * cannot run: an unknown placeholder, or one with no values for this incident.
 */
export function fillHuntingQuery(query: string, entities: EntitySummary): { query: string } | { skipped: string } {
  const lists = new Map<string, string>();
  for (const name of placeholdersIn(query)) {
    const placeholder = Object.hasOwn(HUNTING_PLACEHOLDERS, name) ? HUNTING_PLACEHOLDERS[name] : undefined;
    if (!placeholder) return { skipped: `it uses the unknown placeholder {${name}}` };
    const values = [
      ...new Set(placeholder.values(entities).filter((v): v is string => typeof v === 'string' && v !== '')),
    ];
    if (values.length === 0)
      return { skipped: `the incident has no values for {${name}} (${placeholder.description})` };
    lists.set(name, values.map(kqlString).join(','));
  }
  return { query: query.replace(PLACEHOLDER, (whole, name: string) => lists.get(name) ?? whole) };
}

// ---------------------------------------------------------------------------------------------
// Enrichment with the Defender API

export interface ApiEnrichmentInput {
  incident: unknown;
  tenant: Tenant;
  /** The advanced-hunting queries the route asks for. */
  hunting?: readonly HuntingQuerySpec[];
}

export interface ApiEnrichmentDeps {
  /** Its `budgetClass` (default `poll`) says whose share the calls spend: `push` for a pushed incident. */
  defender: Pick<IncidentApiClient, 'getIncident' | 'runHuntingQuery' | 'budgetWait'> &
    Partial<Pick<IncidentApiClient, 'budgetClass'>>;
}

/** The note for a call not made because the class's share of the tenant's budget is spent. */
function budgetSpent(budgetClass: BudgetClass): string {
  return budgetClass === 'push'
    ? "the tenant's budget for pushed incidents is spent"
    : "the tenant's API budget is spent";
}

export interface ApiEnrichmentResult {
  /** The incident as it came, unchanged. */
  incident: unknown;
  enrichment: Enrichment;
  /** The incident fetched from Defender (the merge target when the incident was merged), if one was. */
  fetchedIncident?: unknown;
  notes: string[];
  /** Defender API operations this enrichment made (the client's own retries not counted). */
  calls: number;
}

/**
 * The derived enrichment plus what needs the API. The full incident is fetched only when the event
 * holds no alerts (a merged incident: its merge target): that call is required, so a retryable
 * failure is thrown for the host to retry the event, while a permanent one (404, 403) becomes a
 * note. A pushed incident's fetch (`budgetClass` `push`) is the exception: when the push share of
 * the budget is spent it is not made, and the incident is enriched from what it holds, with a note,
 * so a pusher can neither spend the tenant's budget nor hold its events waiting for it. Hunting
 * queries are optional: each is skipped with a note when the class's share of the tenant's call
 * budget is spent right now, and any failure becomes a note. An incident that holds its alerts and
 * asks for no hunting costs no call at all.
 */
export async function enrichWithApi(input: ApiEnrichmentInput, deps: ApiEnrichmentDeps): Promise<ApiEnrichmentResult> {
  const { incident, tenant } = input;
  const context: EnrichmentContext = { tenantId: tenant.tenantId, tenantDisplayName: tenant.displayName };
  let enrichment = deriveEnrichment(incident, context);
  const notes: string[] = [];
  let calls = 0;
  let fetchedIncident: unknown;

  if (enrichment.needsFullIncident) {
    const fetched = await fetchFullIncident(incident, tenant, deps, notes);
    calls += fetched.calls;
    if (fetched.incident !== undefined) {
      fetchedIncident = fetched.incident;
      enrichment = mergedEnrichment(enrichment, deriveEnrichment(fetched.incident, context));
    }
  }

  for (const spec of input.hunting ?? []) {
    const ran = await runHunting(spec, enrichment, tenant, deps, notes);
    if (ran.called) calls += 1;
  }

  enrichment.notes = [...notes];
  return { incident, enrichment, ...(fetchedIncident === undefined ? {} : { fetchedIncident }), notes, calls };
}

/** Fetches the incident (following merges) until one holds alerts; a permanent failure is a note. */
async function fetchFullIncident(
  incident: unknown,
  tenant: Tenant,
  deps: ApiEnrichmentDeps,
  notes: string[],
): Promise<{ incident?: unknown; calls: number }> {
  const source = isRecord(incident) ? incident : {};
  const ownId = incidentIdOf(source.incidentId);
  let id = incidentIdOf(source.redirectIncidentId) ?? ownId;
  if (id === undefined) {
    notes.push('the incident holds no alerts and no incidentId to fetch it by: enriched from what the event holds');
    return { calls: 0 };
  }
  const visited = new Set<number>();
  let calls = 0;
  let fetched: unknown;
  for (;;) {
    visited.add(id);
    calls += 1;
    try {
      fetched = await deps.defender.getIncident(tenant, id);
    } catch (err) {
      if (err instanceof BudgetSpentError && err.budgetClass === 'push') {
        // The client does not wait for the push share: the operation was not made (or not retried). Routed with what the event (or the last hop) holds.
        calls -= 1;
        notes.push(`the full incident${fetched === undefined ? '' : ` ${id}`} was not fetched: ${budgetSpent('push')}`);
        return fetched === undefined ? { calls } : { incident: fetched, calls };
      }
      if (err instanceof PermanentError) {
        notes.push(
          `the full incident ${id} could not be fetched, enriched from what the event holds: ${describeError(err)}`,
        );
        return { calls };
      }
      throw err;
    }
    const next =
      alertsOf(fetched).length === 0 && isRecord(fetched) ? incidentIdOf(fetched.redirectIncidentId) : undefined;
    if (next === undefined || visited.has(next)) break;
    if (calls >= MAX_REDIRECT_HOPS) {
      notes.push(
        `incident ${id} was merged into incident ${next}, more than ${MAX_REDIRECT_HOPS} merges away: not followed further`,
      );
      break;
    }
    id = next;
  }
  if (!isRecord(fetched)) {
    notes.push(
      `Defender answered incident ${id} with something that is not an incident: enriched from what the event holds`,
    );
    return { calls };
  }
  if (alertsOf(fetched).length === 0) notes.push(`incident ${id} holds no alerts either`);
  return { incident: fetched, calls };
}

/**
 * The fetched incident's derived fields, under the original incident's identity: its id and portal
 * link stay, and `redirectedTo` names the incident the fields came from when that is another one.
 */
function mergedEnrichment(original: Enrichment, target: Enrichment): Enrichment {
  const merged = target.incidentId !== null && target.incidentId !== original.incidentId;
  return {
    ...target,
    incidentId: original.incidentId ?? target.incidentId,
    portalUrl: original.portalUrl ?? target.portalUrl,
    redirectedTo:
      merged && target.incidentId !== null
        ? { incidentId: target.incidentId, portalUrl: portalUrlFor(target.incidentId, target.tenantId) }
        : original.redirectedTo,
    priorityReasons: merged
      ? [`merged into incident ${target.incidentId}: scored as that incident`, ...target.priorityReasons]
      : target.priorityReasons,
  };
}

async function runHunting(
  spec: HuntingQuerySpec,
  enrichment: Enrichment,
  tenant: Tenant,
  deps: ApiEnrichmentDeps,
  notes: string[],
): Promise<{ called: boolean }> {
  const label = `advanced hunting '${isRecord(spec) && typeof spec.name === 'string' ? spec.name : '?'}'`;
  const problems = huntingSpecProblems(spec);
  if (problems.length > 0) {
    notes.push(`${label} skipped: the query is invalid (${problems.join('; ')})`);
    return { called: false };
  }
  if (Object.hasOwn(enrichment.hunting, spec.name)) {
    notes.push(`${label} skipped: another query of the route has the same name`);
    return { called: false };
  }
  const filled = fillHuntingQuery(spec.query, enrichment.entities);
  if ('skipped' in filled) {
    notes.push(`${label} skipped: ${filled.skipped}`);
    return { called: false };
  }
  // The client takes the call from the budget itself (and would wait for it): checking that a call
  // is free now, rather than taking one here, keeps an optional query from waiting or counting twice.
  const budgetClass = deps.defender.budgetClass ?? 'poll';
  if (deps.defender.budgetWait(tenant.tenantId, 'runHuntingQuery') > 0) {
    notes.push(`${label} skipped: ${budgetSpent(budgetClass)}`);
    return { called: false };
  }
  let result: HuntingResult;
  try {
    result = await deps.defender.runHuntingQuery(tenant, filled.query);
  } catch (err) {
    if (err instanceof HuntingRefusedError) {
      // Blocked for minutes (the CPU quota until the next 15-minute cycle): routed without it, and not asked again until then.
      const minutes = Math.max(1, Math.ceil((err.retryAfterMs ?? 0) / 60_000));
      notes.push(
        `${label} skipped: Defender's advanced hunting ${err.quota === 'cpu' ? 'CPU' : 'call'} quota for the tenant is spent for the next ${minutes} min (${describeError(err)})`,
      );
      return { called: err.sent };
    }
    const why =
      err instanceof RetryableError
        ? 'failed for now (not retried, the query is optional)'
        : err instanceof PermanentError
          ? 'failed'
          : 'failed unexpectedly';
    notes.push(`${label} ${why}: ${describeError(err)}`);
    return { called: true };
  }
  const rows = Array.isArray(result?.Results) ? result.Results.filter(isRecord) : undefined;
  if (!rows) {
    notes.push(`${label}: Defender answered without a Results list`);
    return { called: true };
  }
  const maxRows = spec.maxRows ?? DEFAULT_HUNTING_MAX_ROWS;
  enrichment.hunting[spec.name] = {
    rows: rows.slice(0, maxRows),
    rowCount: rows.length,
    truncated: rows.length > maxRows,
  };
  return { called: true };
}
