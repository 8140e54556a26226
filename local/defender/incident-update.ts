import { DefenderApiError } from './errors.js';
import {
  CLASSIFICATIONS,
  DETERMINATIONS_BY_CLASSIFICATION,
  INCIDENT_STATUSES,
  SETTABLE_DETERMINATIONS,
  type Classification,
  type Determination,
  type Incident,
  type IncidentStatus,
} from './types.js';

/**
 * The body of `PATCH /api/incidents/{id}`: any of status, assignedTo, classification,
 * determination, tags (replaces the list) and comment (adds one). Body parameters are
 * case-sensitive; an unknown or mistyped field is refused rather than ignored, so a client bug
 * shows up here and not as a silent no-op in production.
 */
export interface IncidentUpdate {
  status?: IncidentStatus;
  assignedTo?: string;
  classification?: Classification;
  determination?: Determination;
  tags?: string[];
  comment?: string;
}

const FIELDS = ['status', 'assignedTo', 'classification', 'determination', 'tags', 'comment'];

function invalidBody(message: string): DefenderApiError {
  return new DefenderApiError(400, 'InvalidRequestBody', message);
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw invalidBody(`'${field}' must be one of ${allowed.join(', ')}; got ${JSON.stringify(value)}.`);
  }
  return value as T;
}

export function parseIncidentUpdate(body: unknown): IncidentUpdate {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalidBody('The request body must be a JSON object.');
  const record = body as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length === 0) throw invalidBody(`The request body is empty: set at least one of ${FIELDS.join(', ')}.`);
  const unknown = keys.filter((key) => !FIELDS.includes(key));
  if (unknown.length > 0)
    throw invalidBody(
      `Unknown field(s) ${unknown.map((k) => `'${k}'`).join(', ')}: the body may set ${FIELDS.join(', ')} (case-sensitive).`,
    );

  const update: IncidentUpdate = {};
  if ('status' in record) update.status = oneOf('status', record.status, INCIDENT_STATUSES);
  if ('classification' in record)
    update.classification = oneOf('classification', record.classification, CLASSIFICATIONS);
  if ('determination' in record)
    update.determination = oneOf('determination', record.determination, SETTABLE_DETERMINATIONS);
  if ('assignedTo' in record) {
    if (typeof record.assignedTo !== 'string')
      throw invalidBody(`'assignedTo' must be a string; got ${JSON.stringify(record.assignedTo)}.`);
    update.assignedTo = record.assignedTo;
  }
  if ('tags' in record) {
    if (!Array.isArray(record.tags) || !record.tags.every((tag) => typeof tag === 'string'))
      throw invalidBody("'tags' must be an array of strings.");
    update.tags = record.tags as string[];
  }
  if ('comment' in record) {
    if (typeof record.comment !== 'string' || record.comment.trim() === '')
      throw invalidBody("'comment' must be a non-empty string.");
    update.comment = record.comment;
  }
  return update;
}

const fits = (determination: Determination, classification: Classification | null | undefined): boolean =>
  determination === 'NotAvailable' ||
  (DETERMINATIONS_BY_CLASSIFICATION[classification ?? 'Unknown']?.includes(determination) ?? false);

/**
 * Checks the update against the incident (a determination must be one the update page's table pairs
 * with the classification the incident will have) and applies it.
 */
export function applyIncidentUpdate(incident: Incident, update: IncidentUpdate, author: string, nowIso: string): void {
  const classification = update.classification ?? incident.classification;
  if (update.determination !== undefined && !fits(update.determination, classification)) {
    const allowed = DETERMINATIONS_BY_CLASSIFICATION[classification ?? 'Unknown'];
    throw new DefenderApiError(
      400,
      'InvalidInput',
      `Determination '${update.determination}' is not valid with classification '${classification}'${allowed ? `; valid: ${allowed.join(', ')}` : ''}.`,
    );
  }
  if (update.status !== undefined) incident.status = update.status;
  if (update.assignedTo !== undefined) incident.assignedTo = update.assignedTo;
  if (update.classification !== undefined) {
    incident.classification = update.classification;
    // A determination that does not go with the new classification is recalculated: cleared.
    if (
      update.determination === undefined &&
      incident.determination &&
      !fits(incident.determination, update.classification)
    )
      incident.determination = 'NotAvailable';
  }
  if (update.determination !== undefined) incident.determination = update.determination;
  if (update.tags !== undefined) incident.tags = [...update.tags];
  if (update.comment !== undefined)
    incident.comments = [
      ...(incident.comments ?? []),
      { comment: update.comment, createdBy: author, createdTime: nowIso },
    ];
}
