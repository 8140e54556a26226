import { afterEach, describe, expect, it, vi } from 'vitest';
import { simulateSocActivity } from '../../../local/demo-activity.js';
import { generateIncidents } from '../../../local/defender/generator.js';
import { IncidentStore } from '../../../local/defender/store.js';
import { generateGraphIncidents } from '../../../local/graph/generator.js';
import { GraphIncidentStore } from '../../../local/graph/store.js';

/** npm start's simulated SOC activity, in each tenant's own stand-in: a Graph tenant is not in Defender's. */
describe('the demo SOC activity', () => {
  afterEach(() => void vi.useRealTimers());

  it("adds and works on incidents in each tenant's own stand-in, Defender's or Graph's, in its spellings", () => {
    vi.useFakeTimers();
    const defender = new IncidentStore();
    const graph = new GraphIncidentStore();
    const fabrikam = '11111111-1111-4111-8111-111111111111';
    const woodgrove = '22222222-2222-4222-8222-222222222222';
    defender.provisionTenant(fabrikam, 'Fabrikam');
    defender.upsert(fabrikam, generateIncidents({ tenantId: fabrikam, count: 10, seed: 1 }));
    graph.provisionTenant(woodgrove, 'Woodgrove');
    graph.upsert(woodgrove, generateGraphIncidents({ tenantId: woodgrove, count: 10, seed: 2 }));
    const before = {
      defender: JSON.stringify(defender.list(fabrikam)),
      graph: JSON.stringify(graph.list(woodgrove)),
    };

    const stop = simulateSocActivity(
      { defender, graph },
      [
        { tenantId: fabrikam, source: 'defender' },
        { tenantId: woodgrove, source: 'graph' },
      ],
      1_000,
    );
    vi.advanceTimersByTime(6_000);
    stop();

    expect(defender.list(fabrikam).length).toBeGreaterThan(10);
    expect(graph.list(woodgrove).length).toBeGreaterThan(10);
    expect(JSON.stringify(defender.list(fabrikam))).not.toBe(before.defender);
    expect(JSON.stringify(graph.list(woodgrove))).not.toBe(before.graph);
    // Graph's own spellings, never Defender's, in the Graph stand-in.
    for (const incident of graph.list(woodgrove)) {
      expect(['active', 'inProgress', 'resolved', 'redirected', 'awaitingAction']).toContain(incident.status);
      expect(typeof incident.id).toBe('string');
    }
    expect(defender.hasTenant(woodgrove)).toBe(false);
  });
});
