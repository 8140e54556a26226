import { describe, expect, it } from 'vitest';
import { envelopeFor, envelopeSchema, GRAPH_EVENT_SCHEMA, graphEnvelopeFor } from '../../../shared/messages/events.js';

/** The incident event on the `incidents` queue, as the enricher checks it before anything else. */
const TENANT_A = 'aaaaaaaa-0000-4000-8000-000000000001';
const TENANT_B = 'bbbbbbbb-0000-4000-8000-000000000002';
const incident = { incidentId: 42, lastUpdateTime: '2026-12-01T10:00:00.1234567Z', title: 'x' };
const issuesOf = (value: unknown) => {
  const parsed = envelopeSchema.safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('the incident event envelope', () => {
  it('accepts what the poller and the push endpoint write', () => {
    expect(issuesOf(envelopeFor(TENANT_A, incident, 'poll'))).toEqual([]);
    expect(issuesOf(envelopeFor(TENANT_A, { ...incident, lastUpdateTime: '2026-12-01T10:00:00Z' }, 'webhook'))).toEqual(
      [],
    );
  });

  it("refuses an event whose id names another tenant, so its claim can never land in that tenant's partition", () => {
    const forged = {
      ...envelopeFor(TENANT_A, incident, 'poll'),
      eventId: envelopeFor(TENANT_B, incident, 'poll').eventId,
    };
    expect(issuesOf(forged)).toEqual(['eventId: eventId must be tenantId:incidentId:lastUpdateTime of this envelope']);
  });

  it('refuses an event whose id names another incident or version, or whose timestamp is not one', () => {
    const envelope = envelopeFor(TENANT_A, incident, 'poll');
    expect(issuesOf({ ...envelope, incidentId: 43, incident: { ...incident, incidentId: 43 } })).toHaveLength(1);
    expect(issuesOf({ ...envelope, lastUpdateTime: '2026-12-01T11:00:00Z' })).toHaveLength(1);
    expect(issuesOf({ ...envelope, lastUpdateTime: 'yesterday' })).toEqual([
      'eventId: eventId must be tenantId:incidentId:lastUpdateTime of this envelope',
    ]);
  });

  it("refuses an incident that is not the envelope's", () => {
    const envelope = envelopeFor(TENANT_A, incident, 'poll');
    expect(issuesOf({ ...envelope, incident: { ...incident, incidentId: 7 } })).toEqual([
      "incident: the incident's id must be the envelope's incidentId",
    ]);
  });
});

describe('the incident event envelope of a tenant read through Microsoft Graph (v2)', () => {
  const graphIncident = { id: '42', lastUpdateDateTime: '2026-12-01T10:00:00.1234567Z', displayName: 'x' };
  const version = { incidentId: 42, lastUpdateTime: graphIncident.lastUpdateDateTime };

  it('is keyed like the same version read through the Defender API, and says its schema and API', () => {
    const envelope = graphEnvelopeFor(TENANT_A, graphIncident, version, 'poll');
    expect(issuesOf(envelope)).toEqual([]);
    expect(envelope).toMatchObject({ schema: GRAPH_EVENT_SCHEMA, api: 'graph', incident: graphIncident });
    expect(envelope.eventId).toBe(envelopeFor(TENANT_A, incident, 'poll').eventId);
  });

  it("refuses a Graph incident that is not the envelope's, or whose id is not a Defender incident id", () => {
    const envelope = graphEnvelopeFor(TENANT_A, graphIncident, version, 'poll');
    expect(issuesOf({ ...envelope, incident: { ...graphIncident, id: '7' } })).toEqual([
      "incident: the incident's id must be the envelope's incidentId",
    ]);
    expect(issuesOf({ ...envelope, incident: { ...graphIncident, id: '42abc' } })).not.toEqual([]);
    expect(issuesOf({ ...envelope, incident: { ...graphIncident, id: 42 } })).not.toEqual([]);
  });

  it('refuses a shape that is not the schema it claims: a Defender incident in v2, a Graph one in v1, or a mismatched api', () => {
    const v1 = envelopeFor(TENANT_A, incident, 'poll');
    const v2 = graphEnvelopeFor(TENANT_A, graphIncident, version, 'poll');
    expect(issuesOf({ ...v2, incident })).not.toEqual([]);
    expect(issuesOf({ ...v1, incident: graphIncident })).not.toEqual([]);
    expect(issuesOf({ ...v1, api: 'graph' })).not.toEqual([]);
    expect(issuesOf({ ...v2, api: 'defender' })).not.toEqual([]);
    expect(issuesOf({ ...v1, schema: 'defender-relay.incident.v3' })).not.toEqual([]);
  });
});
