import { describe, expect, it } from 'vitest';
import {
  incidentFilter,
  odataString,
  parseIncidentId,
  parseIncidentUpdate,
  parseListQuery,
  RequestValidationError,
} from '../../../../shared/sources/defender/incident-requests.js';

const UPN = 'analyst@fabrikam.example';
const query = (q: string) => parseListQuery(new URLSearchParams(q), UPN);
const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof RequestValidationError) return err.problems;
    throw err;
  }
  throw new Error('expected a RequestValidationError');
};

describe('the analyst list query', () => {
  it('defaults to the first 50 and resolves assignedTo=me to the caller', () => {
    expect(query('')).toEqual({ top: 50, skip: 0 });
    expect(query('assignedTo=me&top=100&skip=200&status=InProgress')).toEqual({
      assignedTo: UPN,
      top: 100,
      skip: 200,
      status: 'InProgress',
    });
    expect(query('assignedTo=ME').assignedTo).toBe(UPN);
  });

  it('lists every problem, naming the parameter', () => {
    const problems = problemsOf(() => query('status=open&top=0&skip=x&updatedSince=2026-01-01&orderby=id'));
    expect(problems.join('\n')).toMatch(/status: must be one of Active, InProgress, Resolved, Redirected/);
    expect(problems.join('\n')).toMatch(/top: must be between 1 and 100/);
    expect(problems.join('\n')).toMatch(/skip: must be a whole number/);
    expect(problems.join('\n')).toMatch(/updatedSince: must be an ISO 8601 date-time/);
    expect(problems.join('\n')).toMatch(/unknown query parameter\(s\) orderby/);
    expect(problemsOf(() => query('top=5&top=6'))).toEqual(['top: given 2 times; give it once']);
  });

  it("refuses 'me' when the token names no user", () => {
    expect(problemsOf(() => parseListQuery(new URLSearchParams('assignedTo=me'), undefined))[0]).toMatch(/upn/);
  });
});

describe('the OData filter', () => {
  it('joins the clauses Defender supports, with a UTC timestamp literal', () => {
    expect(incidentFilter({})).toBeUndefined();
    expect(incidentFilter({ status: 'Active', assignedTo: UPN, updatedSince: '2026-01-31T10:00:00+02:00' })).toBe(
      `status eq 'Active' and assignedTo eq '${UPN}' and lastUpdateTime ge 2026-01-31T08:00:00.0000000Z`,
    );
  });

  it('keeps a quote inside its literal, so a value cannot add a clause', () => {
    expect(odataString("o'brien")).toBe("'o''brien'");
    expect(incidentFilter({ assignedTo: "x' or status eq 'Active" })).toBe("assignedTo eq 'x'' or status eq ''Active'");
  });

  it('refuses control characters in an assignee', () => {
    expect(problemsOf(() => query('assignedTo=a%0Ab'))[0]).toMatch(/assignedTo: must not contain control characters/);
  });
});

describe('the incident update body', () => {
  it('accepts the documented fields and resolves assignedTo=me', () => {
    expect(
      parseIncidentUpdate(
        {
          status: 'Resolved',
          assignedTo: 'me',
          classification: 'TruePositive',
          determination: 'Malware',
          tags: ['a'],
          comment: ' done ',
        },
        UPN,
      ),
    ).toEqual({
      status: 'Resolved',
      assignedTo: UPN,
      classification: 'TruePositive',
      determination: 'Malware',
      tags: ['a'],
      comment: 'done',
    });
  });

  it('refuses unknown fields, an empty body, wrong types and a comment over 1000 characters', () => {
    expect(problemsOf(() => parseIncidentUpdate({ Status: 'Resolved' }, UPN))[0]).toMatch(/unknown field\(s\) Status/);
    expect(problemsOf(() => parseIncidentUpdate({}, UPN))[0]).toMatch(/set at least one of/);
    expect(problemsOf(() => parseIncidentUpdate([], UPN))[0]).toMatch(/JSON object/);
    expect(problemsOf(() => parseIncidentUpdate({ tags: 'x' }, UPN))[0]).toMatch(/^tags:/);
    expect(problemsOf(() => parseIncidentUpdate({ comment: 'x'.repeat(1001) }, UPN))[0]).toMatch(
      /comment: must be at most 1000 characters/,
    );
    expect(parseIncidentUpdate({ comment: 'x'.repeat(1000) }, UPN).comment).toHaveLength(1000);
  });

  it('takes the determinations the update page pairs with each classification, and refuses the others naming the valid ones', () => {
    for (const [classification, determination] of [
      ['TruePositive', 'Malware'],
      ['TruePositive', 'CompromisedAccount'],
      ['TruePositive', 'Other'],
      ['FalsePositive', 'Clean'],
      ['FalsePositive', 'NoEnoughDataToValidate'],
      ['FalsePositive', 'Other'],
      ['InformationalExpectedActivity', 'SecurityTesting'],
      ['InformationalExpectedActivity', 'ConfirmedActivity'],
      ['InformationalExpectedActivity', 'Other'],
      ['FalsePositive', 'NotAvailable'],
      ['Unknown', 'NotAvailable'],
    ]) {
      expect(parseIncidentUpdate({ classification, determination }, UPN)).toEqual({ classification, determination });
    }
    expect(
      problemsOf(() => parseIncidentUpdate({ classification: 'FalsePositive', determination: 'Malware' }, UPN)),
    ).toEqual([
      'determination: Malware does not go with classification FalsePositive: with FalsePositive it is one of Clean, NoEnoughDataToValidate, Other (or NotAvailable)',
    ]);
    expect(
      problemsOf(() => parseIncidentUpdate({ classification: 'TruePositive', determination: 'Clean' }, UPN))[0],
    ).toMatch(/Clean does not go with classification TruePositive: with TruePositive it is one of MultiStagedAttack, /);
    expect(
      problemsOf(() => parseIncidentUpdate({ classification: 'Unknown', determination: 'Other' }, UPN))[0],
    ).toMatch(/with Unknown only NotAvailable/);
    // Only what the update page lists may be set: names seen in payloads, or retired, are refused.
    for (const determination of [
      'NotEnoughDataToValidate',
      'Apt',
      'SecurityPersonnel',
      'CompromisedUser',
      'NotMalicious',
    ]) {
      expect(problemsOf(() => parseIncidentUpdate({ determination }, UPN))[0]).toMatch(
        /^determination: must be one of NotAvailable, MultiStagedAttack, /,
      );
    }
    // Without a classification in the body, the incident's own decides: Defender judges it.
    expect(parseIncidentUpdate({ determination: 'Clean' }, UPN)).toEqual({ determination: 'Clean' });
  });
});

describe('the incident id in the path', () => {
  it('is a positive whole number', () => {
    expect(parseIncidentId('42')).toBe(42);
    for (const bad of ['0', '-1', '4.2', 'abc', '', undefined, '1'.repeat(16)])
      expect(() => parseIncidentId(bad)).toThrow(RequestValidationError);
  });
});
