import type { IncidentUpdate } from '../defender/client.js';
import { odataString, RequestValidationError, type IncidentListQuery } from '../defender/incident-requests.js';
import type { DETERMINATIONS, IncidentStatus } from '../defender/incident-types.js';
import { normalizeTimestamp } from '../../timestamps.js';
import { GRAPH_PAGE_SIZE, type GraphIncidentUpdate } from './client.js';

/**
 * The analyst endpoints' requests for a tenant read through Microsoft Graph: the same query and update
 * body as for a Defender tenant (validated by ../defender/incident-requests.ts, in the relay's Defender
 * spellings), written as Graph's security incidents API takes them (microsoftgraph/microsoft-graph-docs-contrib
 * api-reference/v1.0/api/security-list-incidents.md, security-incident-update.md, security-incident-post-comments.md).
 * Enum members are the v1.0 schema's lower-camel names; every value is looked up in a Map, so a value that
 * slipped past validation (`constructor`) finds nothing and is refused rather than sent.
 */

/** incidentStatus (resources/security-incident.md): the same members, lower-camel. */
const STATUS = new Map<string, string>([
  ['Active', 'active'],
  ['InProgress', 'inProgress'],
  ['Resolved', 'resolved'],
  ['Redirected', 'redirected'],
] satisfies [IncidentStatus, string][]);

/** alertClassification: the same members, lower-camel. */
const CLASSIFICATION = new Map<string, string>([
  ['Unknown', 'unknown'],
  ['FalsePositive', 'falsePositive'],
  ['TruePositive', 'truePositive'],
  ['InformationalExpectedActivity', 'informationalExpectedActivity'],
]);

/**
 * alertDetermination, as the v1.0 schema names its members (msgraph-metadata clean_v10_metadata): the update
 * page still lists older names (compromisedUser, clean, insufficientData, confirmedUserActivity). Defender's
 * renamed pairs are one verdict each; `NotAvailable` (no determination) is Graph's `unknown`. The same pairing
 * as the Graph stand-in's mapping (local/graph/mapping.ts) and, reversed, defenderViewOf.
 */
const DETERMINATION = new Map<string, string>([
  ['NotAvailable', 'unknown'],
  ['Apt', 'apt'],
  ['MultiStagedAttack', 'multiStagedAttack'],
  ['MaliciousUserActivity', 'maliciousUserActivity'],
  ['Malware', 'malware'],
  ['Phishing', 'phishing'],
  ['UnwantedSoftware', 'unwantedSoftware'],
  ['SecurityTesting', 'securityTesting'],
  ['SecurityPersonnel', 'securityPersonnel'],
  ['LineOfBusinessApplication', 'lineOfBusinessApplication'],
  ['ConfirmedUserActivity', 'confirmedActivity'],
  ['ConfirmedActivity', 'confirmedActivity'],
  ['CompromisedUser', 'compromisedAccount'],
  ['CompromisedAccount', 'compromisedAccount'],
  ['Clean', 'notMalicious'],
  ['NotMalicious', 'notMalicious'],
  ['InsufficientData', 'notEnoughDataToValidate'],
  ['NoEnoughDataToValidate', 'notEnoughDataToValidate'],
  ['NotEnoughDataToValidate', 'notEnoughDataToValidate'],
  ['Other', 'other'],
] satisfies [(typeof DETERMINATIONS)[number], string][]);

function member(members: ReadonlyMap<string, string>, field: string, value: string): string {
  const found = members.get(value);
  if (found === undefined)
    throw new RequestValidationError([`${field}: '${value.slice(0, 40)}' has no Microsoft Graph counterpart`]);
  return found;
}

/** The Graph `$filter` for a list query, or undefined when nothing is filtered (status, assignedTo, lastUpdateDateTime: all filterable per security-list-incidents.md). */
export function graphIncidentFilter(
  query: Pick<IncidentListQuery, 'status' | 'assignedTo' | 'updatedSince'>,
): string | undefined {
  const clauses: string[] = [];
  // Enum members are quoted string literals naming the member exactly (the page's `$filter={property}+eq+'{property-value}'`).
  if (query.status) clauses.push(`status eq ${odataString(member(STATUS, 'status', query.status))}`);
  if (query.assignedTo) clauses.push(`assignedTo eq ${odataString(query.assignedTo)}`);
  // A DateTimeOffset literal is unquoted, as the poller's filter writes it (client.ts).
  if (query.updatedSince)
    clauses.push(`lastUpdateDateTime ge ${normalizeTimestamp(new Date(query.updatedSince).toISOString())}`);
  return clauses.length > 0 ? clauses.join(' and ') : undefined;
}

export interface GraphListRequest {
  filter?: string;
  top: number;
  skip: number;
}

/**
 * One page of the list as Graph is asked for it. Graph refuses a `$top` over 50 on security/incidents
 * ("The limit of '50' for Top query has been exceeded", GRAPH_PAGE_SIZE), so a larger page is the caller's
 * problem to fix, not one to shrink silently: a client that reads a short page as the last would stop early.
 * `$skip` pages as it does for Defender (the list page supports `$skip`).
 */
export function graphListRequest(query: IncidentListQuery): GraphListRequest {
  if (query.top > GRAPH_PAGE_SIZE)
    throw new RequestValidationError([
      `top: must be between 1 and ${GRAPH_PAGE_SIZE} for a tenant read through Microsoft Graph (Graph's limit for a page of incidents), not ${query.top}`,
    ]);
  const filter = graphIncidentFilter(query);
  return { ...(filter !== undefined ? { filter } : {}), top: query.top, skip: query.skip };
}

/** An update as Graph takes it: the incident's PATCH, and a comment for the comments endpoint. */
export interface GraphUpdateRequest {
  patch?: GraphIncidentUpdate;
  comment?: string;
}

/**
 * The analyst's update for Graph: status, assignedTo, classification and determination by PATCH in Graph's
 * spellings, `tags` as `customTags` (replacing the list, as Defender's `tags` does), and the comment apart:
 * Graph's PATCH takes no comment (security-incident-update.md, "Request body"); it goes to
 * `POST /security/incidents/{id}/comments` (security-incident-post-comments.md).
 */
export function graphIncidentUpdate(update: IncidentUpdate): GraphUpdateRequest {
  const patch: GraphIncidentUpdate = {};
  if (update.status !== undefined) patch.status = member(STATUS, 'status', update.status);
  if (update.assignedTo !== undefined) patch.assignedTo = update.assignedTo;
  if (update.classification !== undefined)
    patch.classification = member(CLASSIFICATION, 'classification', update.classification);
  if (update.determination !== undefined)
    patch.determination = member(DETERMINATION, 'determination', update.determination);
  if (update.tags !== undefined) patch.customTags = [...update.tags];
  return {
    ...(Object.keys(patch).length > 0 ? { patch } : {}),
    ...(update.comment !== undefined ? { comment: update.comment } : {}),
  };
}
