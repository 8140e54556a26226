import { badRequest } from './errors.js';
import {
  ALERT_CLASSIFICATIONS,
  ALERT_DETERMINATIONS,
  INCIDENT_PROPERTIES,
  INCIDENT_STATUSES,
  type AlertClassification,
  type AlertDetermination,
  type GraphIncident,
  type IncidentStatus,
} from './types.js';

/**
 * The body of `PATCH /security/incidents/{id}`: the properties the update page lists as updatable, assignedTo,
 * classification, determination, status and customTags (microsoftgraph/microsoft-graph-docs-contrib
 * api-reference/v1.0/api/security-incident-update.md, "Request body"), each optional ("supply only the values
 * for properties that should be updated"); customTags replaces the list. Enum values name a member of the
 * schema's enum; the page's own example writes them in PascalCase ("TruePositive", "MultiStagedAttack"), so a
 * member is recognised whatever its case, and written back lower-camel. Not settable: `unknownFutureValue`
 * (a sentinel) and `awaitingAction` ("Only Microsoft 365 Defender experts can set this status",
 * security-incident.md). Any other property of the incident is read-only here (400, naming it); a property the
 * incident does not have is refused as OData refuses it. The update page does not pair determinations with
 * classifications (the Defender API's update page does), so no pairing is enforced.
 */
export interface IncidentUpdate {
  assignedTo?: string | null;
  classification?: AlertClassification;
  determination?: AlertDetermination;
  status?: IncidentStatus;
  customTags?: string[];
}

const UPDATABLE = ['assignedTo', 'classification', 'determination', 'status', 'customTags'] as const;
const ENTITY_TYPE = 'microsoft.graph.security.incident';
const ODATA_TYPES = [ENTITY_TYPE, `#${ENTITY_TYPE}`];
const MAX_TAGS = 200;
const MAX_TEXT = 10_000;

function member<T extends string>(
  property: string,
  value: unknown,
  members: readonly T[],
  refused: readonly string[],
): T {
  const found = typeof value === 'string' ? members.find((m) => m.toLowerCase() === value.toLowerCase()) : undefined;
  if (found === undefined || refused.includes(found))
    throw badRequest(
      `Invalid value ${JSON.stringify(value)} for property '${property}': use one of ${members.filter((m) => !refused.includes(m)).join(', ')}.`,
    );
  return found;
}

export function parseIncidentUpdate(body: unknown): IncidentUpdate {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw badRequest('The request body must be a JSON object of the incident properties to update.');
  const record = body as Record<string, unknown>;
  const update: IncidentUpdate = {};
  for (const [key, value] of Object.entries(record)) {
    if (key === '@odata.type') {
      if (typeof value !== 'string' || !ODATA_TYPES.includes(value))
        throw badRequest(`The @odata.type ${JSON.stringify(value)} is not '#${ENTITY_TYPE}'.`);
      continue;
    }
    if ((UPDATABLE as readonly string[]).includes(key)) continue;
    if ((INCIDENT_PROPERTIES as readonly string[]).includes(key) || key === 'alerts')
      throw badRequest(
        `The property '${key}' cannot be updated: the updatable properties of an incident are ${UPDATABLE.join(', ')}.`,
      );
    throw badRequest(
      `The property '${key}' does not exist on type '${ENTITY_TYPE}'. Make sure to only use property names that are defined by the type.`,
    );
  }
  if (!UPDATABLE.some((key) => key in record))
    throw badRequest(`The request body sets no property to update: set any of ${UPDATABLE.join(', ')}.`);

  if ('assignedTo' in record) {
    const value = record.assignedTo;
    if (value !== null && (typeof value !== 'string' || value.length > MAX_TEXT))
      throw badRequest(`Invalid value for property 'assignedTo': a string of at most ${MAX_TEXT} characters, or null.`);
    update.assignedTo = value;
  }
  if ('classification' in record)
    update.classification = member('classification', record.classification, ALERT_CLASSIFICATIONS, [
      'unknownFutureValue',
    ]);
  if ('determination' in record)
    update.determination = member('determination', record.determination, ALERT_DETERMINATIONS, ['unknownFutureValue']);
  if ('status' in record)
    update.status = member('status', record.status, INCIDENT_STATUSES, ['unknownFutureValue', 'awaitingAction']);
  if ('customTags' in record) {
    const tags = record.customTags;
    if (
      !Array.isArray(tags) ||
      tags.length > MAX_TAGS ||
      !tags.every((tag) => typeof tag === 'string' && tag.length <= 256)
    )
      throw badRequest(`Invalid value for property 'customTags': an array of at most ${MAX_TAGS} strings.`);
    update.customTags = [...(tags as string[])];
  }
  return update;
}

export function applyIncidentUpdate(incident: GraphIncident, update: IncidentUpdate, author: string): void {
  if (update.assignedTo !== undefined) incident.assignedTo = update.assignedTo;
  if (update.classification !== undefined) incident.classification = update.classification;
  if (update.determination !== undefined) incident.determination = update.determination;
  if (update.status !== undefined) incident.status = update.status;
  if (update.customTags !== undefined) incident.customTags = update.customTags;
  incident.lastModifiedBy = author;
}

/**
 * The body of `POST /security/incidents/{id}/comments`: `{"@odata.type": "microsoft.graph.security.alertComment",
 * "comment": "…"}` (security-incident-post-comments.md, "Request body"); the comment is required and is the
 * only parameter.
 */
export function parseCommentBody(body: unknown): string {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw badRequest('The request body must be a JSON object with the comment.');
  const record = body as Record<string, unknown>;
  for (const [key, value] of Object.entries(record)) {
    if (key === '@odata.type') {
      const type = 'microsoft.graph.security.alertComment';
      if (value !== type && value !== `#${type}`)
        throw badRequest(`The @odata.type ${JSON.stringify(value)} is not '${type}'.`);
      continue;
    }
    if (key !== 'comment')
      throw badRequest(
        `The parameter '${key}' is not taken: the body of a new comment has 'comment' (and '@odata.type') only.`,
      );
  }
  const comment = record.comment;
  if (typeof comment !== 'string' || comment.trim() === '')
    throw badRequest("The parameter 'comment' is required: a non-empty string.");
  if (comment.length > MAX_TEXT) throw badRequest(`The comment is longer than ${MAX_TEXT} characters.`);
  return comment;
}
