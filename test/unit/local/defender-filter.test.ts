import { describe, expect, it } from 'vitest';
import { FilterSyntaxError, matchesFilter, parseIncidentFilter } from '../../../local/defender/odata-filter.js';

const incident = {
  lastUpdateTime: '2020-09-06T14:46:57.0733333Z',
  createdTime: '2020-09-01T08:00:00Z',
  status: 'Active' as const,
  assignedTo: "o'brien@contoso.com",
};

const accepts = (filter: string) => matchesFilter(incident, parseIncidentFilter(filter));

describe('the $filter parser', () => {
  it('compares timestamps exactly to the 7th fractional digit', () => {
    expect(accepts('lastUpdateTime gt 2020-09-06T14:46:57.0733332Z')).toBe(true);
    expect(accepts('lastUpdateTime gt 2020-09-06T14:46:57.0733333Z')).toBe(false);
    expect(accepts('lastUpdateTime ge 2020-09-06T14:46:57.0733333Z')).toBe(true);
    expect(accepts('lastUpdateTime lt 2020-09-06T14:46:57.0733334Z')).toBe(true);
    expect(accepts('lastUpdateTime le 2020-09-06T14:46:57.073Z')).toBe(false);
  });

  it('understands offsets and date-only literals', () => {
    expect(accepts('lastUpdateTime gt 2020-09-06T16:46:57+02:00')).toBe(true);
    expect(accepts('createdTime ge 2020-09-01 and createdTime lt 2020-09-02')).toBe(true);
  });

  it('combines clauses with and, with or without parentheses', () => {
    expect(accepts("status eq 'Active' and lastUpdateTime ge 2020-09-01T00:00:00Z")).toBe(true);
    expect(accepts("(status eq 'Active') and (createdTime lt 2020-09-01T00:00:00Z)")).toBe(false);
    expect(
      parseIncidentFilter("status eq 'Resolved' and assignedTo eq 'a@b.c' and createdTime gt 2020-01-01T00:00:00Z"),
    ).toHaveLength(3);
  });

  it("matches quoted strings with OData's doubled-quote escape, and null", () => {
    expect(accepts("assignedTo eq 'o''brien@contoso.com'")).toBe(true);
    expect(accepts("status eq 'Resolved'")).toBe(false);
    expect(matchesFilter({ ...incident, assignedTo: null }, parseIncidentFilter('assignedTo eq null'))).toBe(true);
  });

  it.each([
    ['', /empty/],
    ['severity eq High', /cannot be filtered on/],
    ['lastUpdateTime eq 2020-09-06T00:00:00Z', /Operator 'eq' is not supported on lastUpdateTime/],
    ["status gt 'Active'", /use eq/],
    ["lastUpdateTime ge '2020-09-06T00:00:00Z'", /unquoted DateTimeOffset/],
    ['lastUpdateTime ge 2020-13-45T00:00:00Z', /not a valid DateTimeOffset/],
    ['lastUpdateTime ge 2020-09-06T14:46:57.07333331Z', /not a valid DateTimeOffset/],
    ['lastUpdateTime ge 2020-09-06T14:46:57', /not a valid DateTimeOffset/],
    ["status eq 'Open'", /not an incident status/],
    ['status eq Active', /quoted string/],
    ["status eq 'Active' or status eq 'Resolved'", /'or' .* not supported/],
    ["status eq 'Active' status eq 'Resolved'", /Expected 'and'/],
    ["status eq 'Active' and", /ended early/],
    ["(status eq 'Active'", /ended early/],
    ["status eq 'Active')", /Unexpected '\)'/],
    ["status eq 'Active", /Unterminated string/],
    ['lastUpdateTime ge 2020-09-06T00:00:00Z; drop table', /Unexpected character ';'/],
    ['status', /ended early/],
    ['lastUpdateTime foo 2020-09-06T00:00:00Z', /Expected an operator/],
  ])('refuses %j with a message saying what is wrong', (filter, message) => {
    expect(() => parseIncidentFilter(filter)).toThrow(FilterSyntaxError);
    expect(() => parseIncidentFilter(filter)).toThrow(message);
  });
});
