import { describe, expect, it } from 'vitest';
import { generateIncidents } from '../../../local/defender/generator.js';
import { parseTimestamp } from '../../../local/defender/timestamps.js';
import {
  CLASSIFICATIONS,
  DETERMINATIONS,
  ENTITY_FIELDS,
  INCIDENT_STATUSES,
  SERVICE_SOURCES,
} from '../../../local/defender/types.js';

const since = new Date('2026-10-01T00:00:00Z');
const until = new Date('2026-10-31T00:00:00Z');
const generate = (overrides: Partial<Parameters<typeof generateIncidents>[0]> = {}) =>
  generateIncidents({ tenantId: 'tenant-a', count: 400, seed: 42, since, until, ...overrides });

describe('the incident generator', () => {
  it('is deterministic: same tenant, seed and window give the same incidents', () => {
    expect(generate()).toEqual(generate());
    expect(generate({ seed: 43 })).not.toEqual(generate());
  });

  it('gives different tenants different data', () => {
    const a = generate();
    const b = generate({ tenantId: 'tenant-b' });
    expect(b.map((i) => i.incidentName)).not.toEqual(a.map((i) => i.incidentName));
    const domainOf = (incidents: typeof a) => incidents[0]?.incidentUri;
    expect(domainOf(a)).toContain('tid=tenant-a');
    expect(domainOf(b)).toContain('tid=tenant-b');
  });

  it('gives unique incident ids from startId upwards', () => {
    const incidents = generate({ startId: 5000 });
    expect(incidents[0]?.incidentId).toBe(5000);
    expect(new Set(incidents.map((i) => i.incidentId)).size).toBe(incidents.length);
  });

  it('writes 7-digit timestamps inside the window, with lastUpdateTime not before createdTime', () => {
    for (const incident of generate()) {
      expect(incident.createdTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/);
      const created = parseTimestamp(incident.createdTime) as bigint;
      const updated = parseTimestamp(incident.lastUpdateTime) as bigint;
      expect(created >= parseTimestamp(since.toISOString())!).toBe(true);
      expect(updated <= parseTimestamp(until.toISOString())!).toBe(true);
      expect(updated >= created).toBe(true);
    }
  });

  it('makes a share of redirected incidents, without alerts, pointing at another incident of the tenant', () => {
    const incidents = generate({ redirectedShare: 0.1 });
    const ids = new Set(incidents.map((i) => i.incidentId));
    const redirected = incidents.filter((i) => i.status === 'Redirected');
    expect(redirected.length).toBeGreaterThan(20);
    expect(redirected.length).toBeLessThan(70);
    for (const incident of redirected) {
      expect(incident.alerts).toEqual([]);
      expect(incident.redirectIncidentId).not.toBe(incident.incidentId);
      expect(ids.has(incident.redirectIncidentId as number)).toBe(true);
    }
    for (const incident of incidents.filter((i) => i.status !== 'Redirected')) {
      expect(incident.redirectIncidentId).toBeNull();
      expect(incident.alerts.length).toBeGreaterThanOrEqual(1);
      expect(incident.alerts.length).toBeLessThanOrEqual(6);
    }
    expect(generate({ redirectedShare: 0 }).some((i) => i.status === 'Redirected')).toBe(false);
  });

  it('gives every entity every field, null when unused', () => {
    const entities = generate().flatMap((i) => i.alerts.flatMap((a) => a.entities));
    expect(new Set(entities.map((e) => e.entityType)).size).toBeGreaterThanOrEqual(8);
    for (const entity of entities) {
      for (const field of ENTITY_FIELDS) expect(entity).toHaveProperty(field);
    }
    const user = entities.find((e) => e.entityType === 'User');
    expect(user?.userPrincipalName).toMatch(/@/);
    expect(user?.sha1).toBeNull();
    expect(user?.ipAddress).toBeNull();
  });

  it('uses valid enumerations and only pairs a determination with TruePositive', () => {
    const incidents = generate();
    for (const incident of incidents) {
      expect(INCIDENT_STATUSES).toContain(incident.status);
      expect(CLASSIFICATIONS).toContain(incident.classification);
      expect(DETERMINATIONS).toContain(incident.determination);
      if (incident.classification !== 'TruePositive') expect(incident.determination).toBe('NotAvailable');
      for (const alert of incident.alerts) {
        expect(SERVICE_SOURCES).toContain(alert.serviceSource);
        expect(alert.incidentId).toBe(incident.incidentId);
        expect(alert.mitreTechniques.length).toBeGreaterThan(0);
        for (const device of alert.devices) expect(device.mdatpDeviceId).toMatch(/^[0-9a-f]{40}$/);
      }
    }
    const high = incidents.filter((i) => i.severity === 'High').length;
    expect(high).toBeGreaterThan(0);
    expect(high).toBeLessThan(incidents.length / 2);
    expect(incidents.some((i) => i.incidentName.startsWith('Multi-stage incident involving'))).toBe(true);
    expect(new Set(incidents.flatMap((i) => i.alerts.map((a) => a.serviceSource))).size).toBe(SERVICE_SOURCES.length);
  });
});
