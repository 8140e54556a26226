import { EVOLVABLE_MEMBERS, type Evidence, type GraphAlert, type GraphIncident } from './types.js';

/**
 * An incident as the API writes it: `@odata.type` first, then the properties in the order of the resource
 * page's JSON representation (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/resources/
 * security-incident.md), the schema's newer ones after; `alerts` only with `$expand=alerts` (the relationship
 * "Supports $expand"); with `$select`, the named properties only; fields seeded beyond the schema after these. Evolvable enum members are written as
 * `unknownFutureValue` unless the client sent `Prefer: include-unknown-enum-members`.
 */
export interface SerializeOptions {
  expandAlerts: boolean;
  select?: readonly string[];
  includeUnknownEnums: boolean;
}

const ORDER = [
  'id',
  'incidentWebUrl',
  'tenantId',
  'redirectIncidentId',
  'displayName',
  'createdDateTime',
  'lastUpdateDateTime',
  'assignedTo',
  'classification',
  'determination',
  'status',
  'severity',
  'customTags',
  'comments',
  'systemTags',
  'description',
  'summary',
  'resolvingComment',
  'lastModifiedBy',
  'priorityScore',
] as const;

const ALERT_TYPE = '#microsoft.graph.security.alert';

function masked<T extends string>(value: T, evolvable: readonly string[], include: boolean): T | 'unknownFutureValue' {
  return !include && evolvable.includes(value) ? 'unknownFutureValue' : value;
}

function serializeEvidence(evidence: Evidence, include: boolean): Record<string, unknown> {
  return {
    ...evidence,
    remediationStatus: masked(evidence.remediationStatus, EVOLVABLE_MEMBERS.evidenceRemediationStatus, include),
  };
}

export function serializeAlert(alert: GraphAlert, include: boolean): Record<string, unknown> {
  return {
    '@odata.type': ALERT_TYPE,
    ...alert,
    serviceSource: masked(alert.serviceSource, EVOLVABLE_MEMBERS.serviceSource, include),
    evidence: alert.evidence.map((evidence) => serializeEvidence(evidence, include)),
  };
}

export function serializeIncident(incident: GraphIncident, options: SerializeOptions): Record<string, unknown> {
  const out: Record<string, unknown> = { '@odata.type': '#microsoft.graph.security.incident' };
  const record = incident as unknown as Record<string, unknown>;
  const wanted = (name: string) => !options.select || options.select.includes(name);
  for (const name of ORDER) {
    if (!wanted(name)) continue;
    out[name] =
      name === 'status'
        ? masked(incident.status, EVOLVABLE_MEMBERS.incidentStatus, options.includeUnknownEnums)
        : (record[name] ?? null);
  }
  // Fields seeded beyond the schema (a property Graph may add tomorrow) are written too, so clients can be
  // tested for tolerating them.
  if (!options.select)
    for (const [name, value] of Object.entries(record))
      if (!(name in out) && name !== 'alerts' && name !== '@odata.type') out[name] = value;
  if (options.expandAlerts)
    out.alerts = (incident.alerts ?? []).map((alert) => serializeAlert(alert, options.includeUnknownEnums));
  return out;
}

/** The `@odata.context` suffix for a projection: `(a,b)`, `(alerts())`, or nothing. */
export function contextProjection(options: Pick<SerializeOptions, 'expandAlerts' | 'select'>): string {
  const parts = [...(options.select ?? []).filter((name) => name !== 'alerts')];
  if (options.expandAlerts) parts.push('alerts()');
  else if (options.select?.includes('alerts')) parts.push('alerts');
  return parts.length > 0 ? `(${parts.join(',')})` : '';
}
