import { describe, expect, it } from 'vitest';
import { matchesFilter, parseFilter } from '../../../local/graph/odata-filter.js';
import { parseIncidentUpdate as parseGraphPatch } from '../../../local/graph/incident-update.js';
import {
  ALERT_CLASSIFICATIONS,
  ALERT_DETERMINATIONS,
  INCIDENT_STATUSES as GRAPH_STATUSES,
} from '../../../local/graph/types.js';
import type { GraphIncident as StoredIncident } from '../../../local/graph/types.js';
import {
  parseIncidentUpdate,
  parseListQuery,
  RequestValidationError,
} from '../../../shared/sources/defender/incident-requests.js';
import {
  CLASSIFICATIONS,
  DETERMINATIONS,
  INCIDENT_STATUSES,
  SETTABLE_DETERMINATIONS,
} from '../../../shared/sources/defender/incident-types.js';
import {
  graphIncidentFilter,
  graphIncidentUpdate,
  graphListRequest,
} from '../../../shared/sources/graph/incident-requests.js';

const UPN = 'analyst@woodgrove.example';
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

describe('hostile input to the Graph translation', () => {
  it('keeps a quote inside its OData literal: the stand-in parses one assignedTo comparison, not an injected clause', () => {
    const filter = graphIncidentFilter(query(`assignedTo=${encodeURIComponent("x' or status eq 'active")}`))!;
    expect(filter).toBe("assignedTo eq 'x'' or status eq ''active'");
    const node = parseFilter(filter);
    const incident = { assignedTo: null, status: 'active' } as unknown as StoredIncident;
    expect(matchesFilter(incident, node)).toBe(false);
    expect(matchesFilter({ ...incident, assignedTo: "x' or status eq 'active" }, node)).toBe(true);
  });

  it('refuses, rather than sends, a value with no Graph member, inherited names included', () => {
    for (const value of ['constructor', '__proto__', 'toString', 'active', 'AwaitingAction']) {
      expect(problemsOf(() => graphIncidentUpdate({ status: value }))[0]).toMatch(/^status: .* no Microsoft Graph/);
      expect(problemsOf(() => graphIncidentFilter({ status: value as 'Active' }))[0]).toMatch(/^status:/);
    }
    expect(problemsOf(() => graphIncidentUpdate({ classification: 'hasOwnProperty' }))[0]).toMatch(/^classification:/);
    expect(problemsOf(() => graphIncidentUpdate({ determination: 'valueOf' }))[0]).toMatch(/^determination:/);
  });

  it('refuses a page larger than Graph serves (50) naming top and the limit, instead of shrinking it', () => {
    const problems = problemsOf(() => graphListRequest(query('top=51')));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^top: must be between 1 and 50 for a tenant read through Microsoft Graph/);
    expect(problemsOf(() => graphListRequest(query('top=100')))[0]).toContain('not 100');
  });

  it('does not share the caller’s tags array with the PATCH body', () => {
    const tags = ['a'];
    const { patch } = graphIncidentUpdate({ tags });
    tags.push('b');
    expect(patch).toEqual({ customTags: ['a'] });
  });
});

describe('the list query for Graph', () => {
  it('asks for the default page of 50 from the start, with no filter', () => {
    expect(graphListRequest(query(''))).toEqual({ top: 50, skip: 0 });
    expect(graphListRequest(query('top=50&skip=100'))).toEqual({ top: 50, skip: 100 });
  });

  it('writes status in Graph’s spelling, assignedTo (me resolved) and lastUpdateDateTime as an unquoted UTC literal', () => {
    expect(graphIncidentFilter(query('status=InProgress'))).toBe("status eq 'inProgress'");
    expect(graphIncidentFilter(query('assignedTo=me'))).toBe(`assignedTo eq '${UPN}'`);
    expect(graphIncidentFilter(query(`updatedSince=${encodeURIComponent('2026-01-31T10:00:00+02:00')}`))).toBe(
      'lastUpdateDateTime ge 2026-01-31T08:00:00.0000000Z',
    );
    expect(
      graphListRequest(query(`status=Resolved&assignedTo=me&updatedSince=2026-01-31T08:00:00.5Z&top=10&skip=20`)),
    ).toEqual({
      filter: `status eq 'resolved' and assignedTo eq '${UPN}' and lastUpdateDateTime ge 2026-01-31T08:00:00.5000000Z`,
      top: 10,
      skip: 20,
    });
  });

  it('writes every status the query takes as a member the stand-in’s OData parser accepts', () => {
    for (const status of INCIDENT_STATUSES) {
      const filter = graphIncidentFilter({ status })!;
      expect(() => parseFilter(filter)).not.toThrow();
      const written = /'(.*)'/.exec(filter)![1]!;
      expect(GRAPH_STATUSES).toContain(written);
      expect(written.toLowerCase()).toBe(status.toLowerCase());
    }
  });
});

describe('the update for Graph', () => {
  it('sends fields by PATCH in Graph’s spellings, tags as customTags, and the comment apart', () => {
    const update = parseIncidentUpdate(
      {
        status: 'Resolved',
        assignedTo: 'me',
        classification: 'FalsePositive',
        determination: 'Clean',
        tags: ['triage', 'phish'],
        comment: 'Closing: benign',
      },
      UPN,
    );
    expect(graphIncidentUpdate(update)).toEqual({
      patch: {
        status: 'resolved',
        assignedTo: UPN,
        classification: 'falsePositive',
        determination: 'notMalicious',
        customTags: ['triage', 'phish'],
      },
      comment: 'Closing: benign',
    });
  });

  it('has no PATCH for a comment alone, and no comment for fields alone; an empty tag list clears the tags', () => {
    expect(graphIncidentUpdate({ comment: 'Looking' })).toEqual({ comment: 'Looking' });
    expect(graphIncidentUpdate({ status: 'InProgress' })).toEqual({ patch: { status: 'inProgress' } });
    expect(graphIncidentUpdate({ tags: [] })).toEqual({ patch: { customTags: [] } });
  });

  it('maps the renamed determinations to the v1.0 schema’s names, and NotAvailable to unknown', () => {
    const determination = (d: string) => graphIncidentUpdate({ determination: d }).patch!.determination;
    expect(determination('NotAvailable')).toBe('unknown');
    expect(determination('CompromisedAccount')).toBe('compromisedAccount');
    expect(determination('CompromisedUser')).toBe('compromisedAccount');
    expect(determination('NoEnoughDataToValidate')).toBe('notEnoughDataToValidate');
    expect(determination('ConfirmedActivity')).toBe('confirmedActivity');
    expect(determination('MultiStagedAttack')).toBe('multiStagedAttack');
  });

  it('writes every value the update takes as a member Graph’s PATCH accepts (the stand-in’s parser, schema members)', () => {
    const settableStatuses = GRAPH_STATUSES.filter((s) => s !== 'unknownFutureValue' && s !== 'awaitingAction');
    for (const status of INCIDENT_STATUSES) {
      const { patch } = graphIncidentUpdate({ status });
      expect(settableStatuses).toContain(patch!.status);
      expect(parseGraphPatch(patch)).toEqual(patch);
    }
    for (const classification of CLASSIFICATIONS) {
      const { patch } = graphIncidentUpdate({ classification });
      expect(ALERT_CLASSIFICATIONS).toContain(patch!.classification);
      expect(parseGraphPatch(patch)).toEqual(patch);
    }
    // Every Defender spelling, settable or read from older payloads, has its Graph member.
    for (const determination of [...DETERMINATIONS, ...SETTABLE_DETERMINATIONS]) {
      const { patch } = graphIncidentUpdate({ determination });
      expect(ALERT_DETERMINATIONS).toContain(patch!.determination);
      expect(parseGraphPatch(patch)).toEqual(patch);
    }
  });
});
