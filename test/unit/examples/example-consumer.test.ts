import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { AccessToken, TokenCredential } from '@azure/identity';
import { describe, expect, it } from 'vitest';
import { claimCheckReader } from '../../../examples/consumer/src/azure.js';
import { consumeRoutedMessage, type ProcessedEvents } from '../../../examples/consumer/src/consumer.js';
import { verifyRelaySignature } from '../../../examples/consumer/src/signature.js';
import { routedMessageFor } from '../../../shared/route/destinations/index.js';
import { deriveEnrichment } from '../../../shared/enrich/enrichment.js';
import { envelopeFor, graphEnvelopeFor } from '../../../shared/messages/events.js';
import { defenderViewOf, graphIncidentVersion } from '../../../shared/sources/graph/incident-view.js';
import { signatureHeader } from '../../../shared/api/webhook-signature.js';

/** examples/consumer's logic, against the relay's own signing and message building. Run against npm start in test/e2e/example-consumer.test.ts. */
const root = resolve(import.meta.dirname, '..', '..', '..');
const incident = (
  JSON.parse(readFileSync(join(root, 'test', 'fixtures', 'incidents', 'docs-example.json'), 'utf8')) as {
    value: ({ incidentId: number; lastUpdateTime: string } & Record<string, unknown>)[];
  }
).value[0]!;
const tenantId = '0b1f6a52-3c1d-4a6e-9d8e-5f2a7c9b1e3d';
const routed = routedMessageFor(
  envelopeFor(tenantId, incident, 'poll'),
  incident,
  deriveEnrichment(incident, { tenantId }),
  { name: 'high-to-soc' },
  'soc-queue',
);

function memoryEvents(): ProcessedEvents & { marked: string[] } {
  const marked: string[] = [];
  return {
    marked,
    has: async (t, e) => marked.includes(`${t}|${e}`),
    mark: async (t, e) => void marked.push(`${t}|${e}`),
  };
}

describe('example consumer', () => {
  it("keeps copies of the published schemas equal to the relay's (npm run schema writes both)", () => {
    for (const name of ['routed-message', 'webhook-headers'])
      expect(readFileSync(join(root, 'examples', 'consumer', 'schema', `${name}.schema.json`), 'utf8'), name).toBe(
        readFileSync(join(root, 'schema', `${name}.schema.json`), 'utf8'),
      );
  });

  it('verifies the signature the relay makes, and refuses another key, an altered body, an old time, a malformed header', () => {
    const body = Buffer.from(JSON.stringify(routed));
    const now = Math.floor(Date.now() / 1000);
    expect(verifyRelaySignature(signatureHeader('k', body, now), 'k', body, now)).toEqual({ ok: true });
    expect(verifyRelaySignature(signatureHeader('other', body, now), 'k', body, now).ok).toBe(false);
    expect(
      verifyRelaySignature(signatureHeader('k', body, now), 'k', Buffer.concat([body, Buffer.from(' ')]), now).ok,
    ).toBe(false);
    expect(verifyRelaySignature(signatureHeader('k', body, now - 301), 'k', body, now)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('300 s'),
    });
    for (const header of [null, '', 'v1=abc', `t=${now},v1=${'0'.repeat(63)}`, `t=${now},v2=${'0'.repeat(64)}`])
      expect(verifyRelaySignature(header, 'k', body, now).ok).toBe(false);
  });

  it('handles a routed message once per eventId, and follows a claim-check for its incident', async () => {
    const events = memoryEvents();
    const handled: number[] = [];
    const deps = {
      events,
      readClaimCheck: async () => incident,
      handle: async (m: { incidentId: number }) => void handled.push(m.incidentId),
      log: () => undefined,
    };
    expect(await consumeRoutedMessage(routed, deps)).toEqual({ status: 'handled', eventId: routed.eventId });
    expect(await consumeRoutedMessage(routed, deps)).toEqual({ status: 'duplicate', eventId: routed.eventId });
    const { incident: _inline, ...rest } = routed;
    const claimChecked = {
      ...rest,
      eventId: routed.eventId,
      incidentRef: { blobUrl: 'https://acct.blob.core.windows.net/routed-payloads/x.json' },
    };
    events.marked.length = 0;
    expect(await consumeRoutedMessage(claimChecked, deps)).toMatchObject({ status: 'handled' });
    expect(handled).toEqual([incident.incidentId, incident.incidentId]);
    // A blob holding another incident is not taken for this one.
    events.marked.length = 0;
    await expect(
      consumeRoutedMessage(claimChecked, { ...deps, readClaimCheck: async () => ({ ...incident, incidentId: 1 }) }),
    ).rejects.toThrow(/does not hold incident/);
  });

  it("handles a message of a tenant read through Microsoft Graph (v2), its incident's id being Graph's string id", async () => {
    const graphIncident = (
      JSON.parse(readFileSync(join(root, 'test', 'fixtures', 'incidents', 'graph-docs-example.json'), 'utf8')) as {
        value: ({ id: string; lastUpdateDateTime: string } & Record<string, unknown>)[];
      }
    ).value[0]!;
    const version = graphIncidentVersion(graphIncident) as { incidentId: number; lastUpdateTime: string };
    const graphRouted = routedMessageFor(
      graphEnvelopeFor(tenantId, graphIncident, version, 'poll'),
      graphIncident,
      deriveEnrichment(defenderViewOf(graphIncident), { tenantId }),
      { name: 'high-to-soc' },
      'soc-queue',
    );
    const handled: unknown[] = [];
    const deps = {
      events: memoryEvents(),
      readClaimCheck: async () => graphIncident,
      handle: async (m: { incident: Record<string, unknown> }) => void handled.push(m.incident.displayName),
      log: () => undefined,
    };
    expect(await consumeRoutedMessage(graphRouted, deps)).toEqual({ status: 'handled', eventId: graphRouted.eventId });
    expect(handled).toEqual([graphIncident.displayName]);
    const { incident: _inline, ...rest } = graphRouted;
    const claimChecked = {
      ...rest,
      incidentRef: { blobUrl: 'https://acct.blob.core.windows.net/routed-payloads/g.json' },
    };
    deps.events.marked.length = 0;
    await expect(
      consumeRoutedMessage(claimChecked, { ...deps, readClaimCheck: async () => ({ ...graphIncident, id: '1' }) }),
    ).rejects.toThrow(/does not hold incident/);
  });

  it('refuses, without retrying, a message the schema does not accept', async () => {
    const deps = {
      events: memoryEvents(),
      readClaimCheck: async () => incident,
      handle: async () => undefined,
      log: () => undefined,
    };
    for (const bad of [null, 'text', { ...routed, eventId: undefined }, { ...routed, enrichment: undefined }])
      expect(await consumeRoutedMessage(bad, deps)).toMatchObject({ status: 'invalid' });
    expect(deps.events.marked).toEqual([]);
  });

  it("reads claim-checks only from the relay's blob service: no token goes to another host", async () => {
    const asked: string[] = [];
    const credential: TokenCredential = {
      getToken: async (scope) => {
        asked.push(String(scope));
        return { token: 't', expiresOnTimestamp: Date.now() + 3_600_000 } as AccessToken;
      },
    };
    const read = claimCheckReader('https://relay.blob.core.windows.net', credential);
    for (const url of [
      'https://attacker.example/routed-payloads/x.json',
      'https://relay.blob.core.windows.net.attacker.example/x.json',
      'http://relay.blob.core.windows.net/routed-payloads/x.json',
    ])
      await expect(read(url)).rejects.toThrow(/not in the relay's blob service/);
    expect(asked).toEqual([]);
  });
});
