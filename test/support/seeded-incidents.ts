import { randomUUID } from 'node:crypto';
import { generateIncidents, type Incident } from '../../local/defender/generator.js';
import type { IncidentStore } from '../../local/defender/store.js';

/** A new incident in the Defender stand-in (the tenant's next id, not redirected), shaped by `shape`, as the store keeps it. */
export function seedIncident(
  store: IncidentStore,
  tenantId: string,
  shape: (i: Incident) => void = () => {},
): Incident {
  const [incident] = generateIncidents({
    tenantId,
    count: 1,
    seed: randomUUID(),
    startId: store.nextIncidentId(tenantId),
    redirectedShare: 0,
  });
  shape(incident!);
  store.upsert(tenantId, [incident!]);
  return store.get(tenantId, incident!.incidentId)!;
}

/** High severity, active, a high-risk device: what the demo's `high-to-soc` rule routes (with a tag written back). */
export function highRisk(i: Incident): void {
  i.severity = 'High';
  i.status = 'Active';
  i.alerts[0]!.devices = [
    {
      ...(i.alerts[0]!.devices[0] ?? ({} as never)),
      mdatpDeviceId: 'f'.repeat(40),
      deviceDnsName: 'fin-ws-01.fabrikam.example',
      riskScore: 'High',
      healthStatus: 'Active',
    } as never,
  ];
}
