import * as z from 'zod';
import type { IncidentUpdate } from './client.js';
import {
  CLASSIFICATIONS,
  determinationFits,
  determinationsFor,
  INCIDENT_STATUSES,
  SETTABLE_DETERMINATIONS,
} from './incident-types.js';
import { normalizeTimestamp } from '../../timestamps.js';

/**
 * What an analyst may ask of the user-context endpoints: the query of `GET /api/incidents` and the
 * body of `PATCH /api/incidents/{tenantId}/{incidentId}`, validated before anything reaches Defender.
 * Every value that ends up in an OData `$filter` is either from a closed list or quoted and escaped.
 */

/** `assignedTo: "me"` means the signed-in analyst. */
export const ME = 'me';

// A user principal name or display name; control characters have no business in a filter or an assignment.
const assignee = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(256, 'must be at most 256 characters')
  .refine((v) => !/\p{Cc}/u.test(v), 'must not contain control characters');

const wholeNumber = (min: number, max?: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .refine(
      (n) => n >= min && (max === undefined || n <= max),
      max === undefined ? `must be at least ${min}` : `must be between ${min} and ${max}`,
    );

const listQuerySchema = z
  .object({
    status: z.enum(INCIDENT_STATUSES, { message: `must be one of ${INCIDENT_STATUSES.join(', ')}` }).optional(),
    assignedTo: assignee.optional(),
    updatedSince: z.iso
      .datetime({ offset: true, message: 'must be an ISO 8601 date-time with a time zone, e.g. 2026-01-31T08:00:00Z' })
      .optional(),
    top: wholeNumber(1, 100).default(50),
    skip: wholeNumber(0, 100_000).default(0),
  })
  .strict();

export interface IncidentListQuery {
  status?: (typeof INCIDENT_STATUSES)[number];
  /** Already resolved: `me` has become the caller's UPN. */
  assignedTo?: string;
  updatedSince?: string;
  top: number;
  skip: number;
}

export class RequestValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid request: ${problems.join('; ')}`);
    this.name = 'RequestValidationError';
  }
}

function problemsOf(error: z.ZodError, unrecognized: (keys: string[]) => string): string[] {
  return error.issues.map((issue) =>
    issue.code === 'unrecognized_keys'
      ? unrecognized(issue.keys)
      : `${issue.path.join('.') || '(body)'}: ${issue.message}`,
  );
}

/** The list query from URL parameters; a parameter given twice or not known is a problem, not a guess. */
export function parseListQuery(params: URLSearchParams, callerUpn: string | undefined): IncidentListQuery {
  // No prototype: a parameter named __proto__ must be seen (and refused) like any other unknown one.
  const raw = Object.create(null) as Record<string, string>;
  const problems: string[] = [];
  for (const name of new Set(params.keys())) {
    const values = params.getAll(name);
    if (values.length > 1) problems.push(`${name}: given ${values.length} times; give it once`);
    raw[name] = values[0]!;
  }
  const parsed = listQuerySchema.safeParse(raw);
  if (!parsed.success) {
    problems.push(
      ...problemsOf(
        parsed.error,
        (keys) => `unknown query parameter(s) ${keys.join(', ')}: use status, assignedTo, updatedSince, top, skip`,
      ),
    );
  }
  if (problems.length > 0 || !parsed.success) throw new RequestValidationError(problems);
  const query = parsed.data;
  return { ...query, assignedTo: resolveAssignee(query.assignedTo, callerUpn, 'assignedTo') };
}

function resolveAssignee(value: string | undefined, callerUpn: string | undefined, field: string): string | undefined {
  if (value === undefined || value.toLowerCase() !== ME) return value;
  if (!callerUpn)
    throw new RequestValidationError([`${field}: 'me' needs a token with a upn or preferred_username claim`]);
  return callerUpn;
}

/** An OData string literal: single quotes doubled, so a value can never close the literal early. */
export function odataString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** The Defender `$filter` for a list query, or undefined when nothing is filtered. */
export function incidentFilter(
  query: Pick<IncidentListQuery, 'status' | 'assignedTo' | 'updatedSince'>,
): string | undefined {
  const clauses: string[] = [];
  if (query.status) clauses.push(`status eq ${odataString(query.status)}`);
  if (query.assignedTo) clauses.push(`assignedTo eq ${odataString(query.assignedTo)}`);
  // Validated as ISO 8601 above; normalised to the unquoted UTC literal Defender compares against.
  if (query.updatedSince)
    clauses.push(`lastUpdateTime ge ${normalizeTimestamp(new Date(query.updatedSince).toISOString())}`);
  return clauses.length > 0 ? clauses.join(' and ') : undefined;
}

export const MAX_COMMENT_LENGTH = 1000;

const updateSchema = z
  .object(
    {
      status: z.enum(INCIDENT_STATUSES, { message: `must be one of ${INCIDENT_STATUSES.join(', ')}` }).optional(),
      assignedTo: assignee.optional(),
      classification: z.enum(CLASSIFICATIONS, { message: `must be one of ${CLASSIFICATIONS.join(', ')}` }).optional(),
      determination: z
        .enum(SETTABLE_DETERMINATIONS as [string, ...string[]], {
          message: `must be one of ${SETTABLE_DETERMINATIONS.join(', ')}`,
        })
        .optional(),
      tags: z
        .array(z.string().trim().min(1, 'a tag must not be empty').max(128, 'a tag must be at most 128 characters'), {
          message: 'must be an array of strings',
        })
        .max(100, 'at most 100 tags')
        .optional(),
      comment: z
        .string({ message: 'must be a string' })
        .trim()
        .min(1, 'must not be empty')
        .max(MAX_COMMENT_LENGTH, `must be at most ${MAX_COMMENT_LENGTH} characters`)
        .optional(),
    },
    { message: 'the body must be a JSON object' },
  )
  .strict()
  .superRefine((update, ctx) => {
    if (Object.keys(update).length === 0) {
      ctx.addIssue({
        code: 'custom',
        message: 'set at least one of status, assignedTo, classification, determination, tags, comment',
      });
    }
    // Defender judges a determination against the classification the incident will have; when the
    // body sets both, the answer is already known here.
    if (
      update.determination &&
      update.classification &&
      !determinationFits(update.determination, update.classification)
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['determination'],
        message: `${update.determination} does not go with classification ${update.classification}: ${determinationsFor(update.classification)}`,
      });
    }
  });

/** The PATCH body, with `assignedTo: "me"` resolved to the caller. */
export function parseIncidentUpdate(body: unknown, callerUpn: string | undefined): IncidentUpdate {
  const parsed = updateSchema.safeParse(body);
  if (!parsed.success) {
    throw new RequestValidationError(
      problemsOf(
        parsed.error,
        (keys) =>
          `unknown field(s) ${keys.join(', ')}: the body may set status, assignedTo, classification, determination, tags, comment (case-sensitive)`,
      ),
    );
  }
  const update: IncidentUpdate = { ...parsed.data };
  if (update.assignedTo !== undefined) update.assignedTo = resolveAssignee(update.assignedTo, callerUpn, 'assignedTo');
  return update;
}

/** A path segment that must be a positive incident id. */
export function parseIncidentId(value: string | undefined): number {
  if (!value || !/^\d{1,15}$/.test(value) || Number(value) < 1) {
    throw new RequestValidationError([
      `incidentId: must be a positive whole number, not '${(value ?? '').slice(0, 40)}'`,
    ]);
  }
  return Number(value);
}
