import * as z from 'zod';
import { CLASSIFICATIONS, DETERMINATIONS, SEVERITIES } from '../sources/defender/incident-types.js';
import { findStructureViolation, INCIDENT_LIMITS } from '../messages/json-limits.js';
import { isUtcTimestamp } from '../timestamps.js';

/**
 * What a pushed body must hold: one Defender XDR incident, an array of them, or Defender's list
 * shape `{ "value": [ … ] }`. Each incident is checked against the documented shape (defender-api.md)
 * and otherwise kept exactly as sent: unknown fields pass, nothing is rewritten.
 */
export const MAX_INCIDENTS_PER_REQUEST = 100;

// Defender writes UTC with up to seven fractional digits; other offsets would break eventId equality with polled versions.
const timestamp = z
  .string()
  .refine(
    isUtcTimestamp,
    'must be an ISO 8601 UTC timestamp with up to 7 fractional digits, e.g. 2020-09-06T14:46:57.0733333Z',
  );

const INCIDENT_STATUSES = ['Active', 'InProgress', 'Resolved', 'Redirected'] as const;
const ALERT_STATUSES = ['Unknown', 'New', 'Active', 'InProgress', 'Resolved'] as const;

const id = z
  .number()
  .refine(Number.isInteger, 'must be a whole number')
  .refine((n) => n >= 0, 'must be 0 or more')
  .refine((n) => n <= Number.MAX_SAFE_INTEGER, 'is too large');
const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, {
    error: (issue) => (issue.input === undefined ? 'is required' : `must be one of ${values.join(', ')}`),
  });

const commentSchema = z.looseObject({
  comment: z.string().nullish(),
  createdBy: z.string().nullish(),
  createdTime: timestamp.nullish(),
});

const alertSchema = z.looseObject({
  alertId: z.string().min(1, 'must not be empty'),
  incidentId: id.nullish(),
  serviceSource: z.string().nullish(),
  creationTime: timestamp.nullish(),
  lastUpdatedTime: timestamp.nullish(),
  resolvedTime: timestamp.nullish(),
  firstActivity: timestamp.nullish(),
  lastActivity: timestamp.nullish(),
  title: z.string().nullish(),
  status: oneOf(ALERT_STATUSES).nullish(),
  severity: oneOf(SEVERITIES).nullish(),
  classification: oneOf(CLASSIFICATIONS).nullish(),
  determination: oneOf(DETERMINATIONS).nullish(),
  mitreTechniques: z.array(z.string()).nullish(),
  devices: z.array(z.looseObject({})).nullish(),
  entities: z.array(z.looseObject({ entityType: z.string().min(1, 'must not be empty') })).nullish(),
});

export const pushedIncidentSchema = z.looseObject({
  incidentId: id,
  redirectIncidentId: id.nullish(),
  incidentName: z.string().nullish(),
  createdTime: timestamp,
  lastUpdateTime: timestamp,
  assignedTo: z.string().nullish(),
  status: oneOf(INCIDENT_STATUSES),
  severity: oneOf(SEVERITIES),
  classification: oneOf(CLASSIFICATIONS).nullish(),
  determination: oneOf(DETERMINATIONS).nullish(),
  tags: z.array(z.string()).nullish(),
  comments: z.array(commentSchema).nullish(),
  alerts: z.array(alertSchema).nullish(),
});

/** A pushed incident as sent (the validated fields plus whatever else it carries). */
export type PushedIncident = { incidentId: number; lastUpdateTime: string } & Record<string, unknown>;

export interface IncidentProblem {
  /** Position of the incident in the batch (0 for a single incident). */
  index: number;
  /** Dotted path inside the incident (`alerts.0.severity`); empty for the incident itself. */
  path: string;
  message: string;
}

export type IncidentBatch = { ok: true; incidents: PushedIncident[] } | { ok: false; problems: IncidentProblem[] };

/** Finds the incidents in a parsed body and checks every one; any problem rejects the whole batch. */
export function readIncidentBatch(body: unknown): IncidentBatch {
  let items: unknown[];
  if (Array.isArray(body)) items = body;
  else if (isObject(body) && 'value' in body) {
    if (!Array.isArray(body.value))
      return rejected(0, 'value', "must be an array of incidents (Defender's list shape)");
    items = body.value;
  } else if (isObject(body)) items = [body];
  else return rejected(0, '', 'the body must be an incident object, an array of incidents or { "value": [ … ] }');

  if (items.length === 0) return rejected(0, '', 'the batch holds no incidents: send at least one');
  if (items.length > MAX_INCIDENTS_PER_REQUEST) {
    return rejected(
      MAX_INCIDENTS_PER_REQUEST,
      '',
      `at most ${MAX_INCIDENTS_PER_REQUEST} incidents per request (got ${items.length}): split the batch`,
    );
  }

  const problems: IncidentProblem[] = [];
  items.forEach((item, index) => {
    if (!isObject(item)) {
      problems.push({ index, path: '', message: 'must be an incident object' });
      return;
    }
    // Before the schema (or anything else) walks it: a structure this deep or wide is refused unread.
    const tooDeep = findStructureViolation(item, INCIDENT_LIMITS);
    if (tooDeep) {
      problems.push({ index, path: tooDeep.path, message: tooDeep.message });
      return;
    }
    const parsed = pushedIncidentSchema.safeParse(item, { error: plainMessage });
    if (!parsed.success) {
      for (const issue of parsed.error.issues)
        problems.push({ index, path: issue.path.map(String).join('.'), message: issue.message });
    }
  });
  // The incidents travel as sent; the schema only judges them.
  return problems.length > 0 ? { ok: false, problems } : { ok: true, incidents: items as PushedIncident[] };
}

/** Zod's default wording for missing and mistyped fields, said plainly. */
function plainMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code !== 'invalid_type') return undefined;
  if (issue.input === undefined) return 'is required';
  const expected = String(issue.expected);
  return `must be ${/^[aeiou]/.test(expected) ? 'an' : 'a'} ${expected}${issue.input === null ? ' (got null)' : ''}`;
}

function rejected(index: number, path: string, message: string): IncidentBatch {
  return { ok: false, problems: [{ index, path, message }] };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
