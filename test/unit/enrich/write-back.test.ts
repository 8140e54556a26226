import { describe, expect, it } from 'vitest';
import { contentFingerprint, WRITE_BACK_MARKER } from '../../../shared/enrich/write-back.js';

const incident = {
  incidentId: 924565,
  lastUpdateTime: '2020-09-06T14:46:57.29Z',
  status: 'Active',
  assignedTo: null,
  tags: ['finance'],
  comments: [{ comment: 'looking into it', createdBy: 'tier1@contoso.example', createdTime: '2020-09-06T14:40:00Z' }],
  alerts: [{ alertId: 'da1', severity: 'High' }],
};

describe('write-back echo detection', () => {
  it('ignores exactly what the relay writes back: lastUpdateTime, relayed: tags and marked comments', () => {
    const echo = {
      ...incident,
      lastUpdateTime: '2020-09-06T15:00:00.1234567Z',
      tags: ['finance', 'relayed:high-to-soc'],
      comments: [
        ...incident.comments,
        { comment: `${WRITE_BACK_MARKER} routed to soc-queue`, createdBy: 'app', createdTime: '2020-09-06T15:00:00Z' },
      ],
    };
    expect(contentFingerprint(echo)).toBe(contentFingerprint(incident));
  });

  it('sees every analyst change as news', () => {
    const base = contentFingerprint(incident);
    expect(contentFingerprint({ ...incident, status: 'Resolved' })).not.toBe(base);
    expect(contentFingerprint({ ...incident, tags: ['finance', 'vip'] })).not.toBe(base);
    expect(
      contentFingerprint({
        ...incident,
        comments: [...incident.comments, { comment: 'escalated', createdBy: 'x', createdTime: 't' }],
      }),
    ).not.toBe(base);
    expect(contentFingerprint({ ...incident, alerts: [{ alertId: 'da1', severity: 'Medium' }] })).not.toBe(base);
  });

  it('does not depend on key order', () => {
    const reordered = Object.fromEntries(Object.entries(incident).reverse());
    expect(contentFingerprint(reordered)).toBe(contentFingerprint(incident));
  });
});
