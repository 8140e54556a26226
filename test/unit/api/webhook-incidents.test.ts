import { describe, expect, it } from 'vitest';
import { readIncidentBatch, type IncidentBatch } from '../../../shared/api/webhook-incidents.js';
import { DEFENDER_DOCS_LIST_EXAMPLE } from '../../support/webhook-payloads.js';

const incident = (fields: Record<string, unknown> = {}) => ({
  incidentId: 924565,
  createdTime: '2020-09-06T14:46:57.0733333Z',
  lastUpdateTime: '2020-09-06T14:46:57.29Z',
  status: 'Active',
  severity: 'Medium',
  ...fields,
});
const problemsOf = (batch: IncidentBatch) => (batch.ok ? [] : batch.problems);

describe('pushed incident bodies', () => {
  it('finds the incidents in each accepted shape and returns them as sent (same objects)', () => {
    const one = incident();
    expect(readIncidentBatch(one)).toEqual({ ok: true, incidents: [one] });
    const array = [incident(), incident({ incidentId: 2 })];
    const fromArray = readIncidentBatch(array);
    expect(fromArray.ok && fromArray.incidents[1]).toBe(array[1]);
    const list = JSON.parse(DEFENDER_DOCS_LIST_EXAMPLE) as { value: unknown[] };
    const fromList = readIncidentBatch(list);
    expect(fromList.ok && fromList.incidents).toEqual(list.value);
    expect(readIncidentBatch({ value: [] })).toEqual({
      ok: false,
      problems: [{ index: 0, path: '', message: 'the batch holds no incidents: send at least one' }],
    });
    expect(readIncidentBatch([]).ok).toBe(false);
  });

  it('keeps fields it does not know, at every level', () => {
    const sent = incident({
      detectorId: 'x',
      alerts: [{ alertId: 'a', vendorField: { deep: true }, devices: [{ vmMetadata: null, tags: ['t'] }] }],
    });
    expect(readIncidentBatch(sent)).toEqual({ ok: true, incidents: [sent] });
  });

  it('refuses a body that holds no incident objects', () => {
    expect(problemsOf(readIncidentBatch('incident'))).toEqual([
      { index: 0, path: '', message: expect.stringContaining('must be an incident object, an array') },
    ]);
    expect(problemsOf(readIncidentBatch({ value: {} }))).toEqual([
      { index: 0, path: 'value', message: expect.stringContaining('must be an array') },
    ]);
    expect(problemsOf(readIncidentBatch([incident(), 42, null]))).toEqual([
      { index: 1, path: '', message: 'must be an incident object' },
      { index: 2, path: '', message: 'must be an incident object' },
    ]);
  });

  it('caps a request at 100 incidents', () => {
    expect(readIncidentBatch(Array.from({ length: 100 }, (_, i) => incident({ incidentId: i }))).ok).toBe(true);
    expect(problemsOf(readIncidentBatch({ value: Array.from({ length: 101 }, () => incident()) }))[0]!.message).toMatch(
      /at most 100 .* \(got 101\)/,
    );
  });

  it.each([
    ['2020-09-06T14:46:57Z', true],
    ['2020-09-06T14:46:57.0733333Z', true],
    ['2020-09-06T14:46:57.1+00:00', true],
    ['2020-09-06T14:46:57.07333333Z', false],
    ['2020-09-06T14:46:57+02:00', false],
    ['2020-09-06 14:46:57Z', false],
    ['2020-02-30T14:46:57Z', false],
    ['2020-09-06T24:00:00Z', false],
    ['1599403617', false],
  ])('timestamp %s accepted: %s', (value, accepted) => {
    expect(readIncidentBatch(incident({ lastUpdateTime: value })).ok).toBe(accepted);
  });

  it('accepts the old and the new names of classifications and determinations, and nulls where Defender sends them', () => {
    for (const [classification, determination] of [
      ['InformationalExpectedActivity', 'SecurityTesting'],
      ['TruePositive', 'MultiStagedAttack'],
      ['TruePositive', 'Apt'],
      ['FalsePositive', 'NotMalicious'],
      ['FalsePositive', 'Clean'],
      ['TruePositive', 'CompromisedAccount'],
      ['TruePositive', 'CompromisedUser'],
    ]) {
      expect(readIncidentBatch(incident({ classification, determination })).ok).toBe(true);
    }
    expect(
      readIncidentBatch(
        incident({
          assignedTo: null,
          redirectIncidentId: null,
          classification: null,
          alerts: [{ alertId: 'a', classification: null, resolvedTime: null }],
        }),
      ).ok,
    ).toBe(true);
    // A merged incident comes without alerts.
    expect(readIncidentBatch(incident({ status: 'Redirected', redirectIncidentId: 924569, alerts: [] })).ok).toBe(true);
  });

  it('lists every problem with the incident index and the dotted path, in plain words', () => {
    const problems = problemsOf(
      readIncidentBatch([
        incident(),
        incident({ incidentId: -1, status: 'active', severity: undefined, tags: 'urgent' }),
        incident({ incidentId: 1.5, alerts: [{ alertId: 'a' }, { severity: 'Critical', entities: [{}] }] }),
      ]),
    );
    expect(problems).toEqual([
      { index: 1, path: 'incidentId', message: 'must be 0 or more' },
      { index: 1, path: 'status', message: 'must be one of Active, InProgress, Resolved, Redirected' },
      { index: 1, path: 'severity', message: 'is required' },
      { index: 1, path: 'tags', message: 'must be an array' },
      { index: 2, path: 'incidentId', message: 'must be a whole number' },
      { index: 2, path: 'alerts.1.alertId', message: 'is required' },
      { index: 2, path: 'alerts.1.severity', message: 'must be one of UnSpecified, Informational, Low, Medium, High' },
      { index: 2, path: 'alerts.1.entities.0.entityType', message: 'is required' },
    ]);
  });

  it('refuses an incident id beyond what JSON numbers carry exactly', () => {
    expect(problemsOf(readIncidentBatch(incident({ incidentId: 2 ** 53 + 2 })))).toEqual([
      { index: 0, path: 'incidentId', message: 'is too large' },
    ]);
  });
});
