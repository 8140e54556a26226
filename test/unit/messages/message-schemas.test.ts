import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type * as z from 'zod';
import { schemaFileOf, schemaFileText, SCHEMA_DIR } from '../../../scripts/schema.js';
import { routedMessageFor } from '../../../shared/route/destinations/index.js';
import { deriveEnrichment, type Enrichment } from '../../../shared/enrich/enrichment.js';
import { envelopeFor } from '../../../shared/messages/events.js';
import {
  enrichmentSchema,
  PUBLISHED_SCHEMAS,
  type PublishedSchemaName,
} from '../../../shared/messages/message-schemas.js';
import { signatureHeader } from '../../../shared/api/webhook-signature.js';
import { schemaProblems } from '../../support/published-schemas.js';

const root = resolve(import.meta.dirname, '..', '..', '..');
const names = Object.keys(PUBLISHED_SCHEMAS) as PublishedSchemaName[];
const docsIncident = (
  JSON.parse(readFileSync(join(root, 'test', 'fixtures', 'incidents', 'docs-example.json'), 'utf8')) as {
    value: ({ incidentId: number; lastUpdateTime: string } & Record<string, unknown>)[];
  }
).value[0]!;
const tenantId = '8c5b5b3e-6a4c-4b8e-9d0a-2f5a1c3d4e5f';

describe('published message schemas (schema/)', () => {
  it('are exactly what the zod definitions give: change one without `npm run schema` and this fails', () => {
    const files = readdirSync(join(root, SCHEMA_DIR)).sort();
    expect(files).toEqual(names.map(schemaFileOf).sort());
    for (const name of names)
      expect(
        readFileSync(join(root, SCHEMA_DIR, schemaFileOf(name)), 'utf8'),
        `${schemaFileOf(name)}: run npm run schema`,
      ).toBe(schemaFileText(name));
  });

  it('describe the enrichment type the code builds, field for field', () => {
    expectTypeOf<z.infer<typeof enrichmentSchema>>().toEqualTypeOf<Enrichment>();
  });

  it('accept the messages the relay builds: an event, a routed message with its enrichment, a dead letter, signed headers', () => {
    const event = envelopeFor(tenantId, docsIncident, 'poll');
    expect(schemaProblems('incident-event', event)).toEqual([]);
    const enrichment = deriveEnrichment(docsIncident, { tenantId, tenantDisplayName: 'Contoso' });
    const routed = routedMessageFor(event, docsIncident, enrichment, { name: 'high' }, 'siem');
    expect(schemaProblems('routed-message', routed)).toEqual([]);
    const { incident: _incident, ...claimChecked } = routed;
    expect(
      schemaProblems('routed-message', {
        ...claimChecked,
        incidentRef: { blobUrl: 'https://acct.blob.core.windows.net/routed-payloads/x.json' },
      }),
    ).toEqual([]);
    expect(
      schemaProblems('dead-letter', { reason: 'x', failedAt: new Date().toISOString(), message: 'not json' }),
    ).toEqual([]);
    const body = JSON.stringify(routed);
    expect(
      schemaProblems('webhook-headers', {
        'content-type': 'application/json',
        'x-relay-event-id': routed.eventId,
        'x-relay-signature': signatureHeader('key', body),
      }),
    ).toEqual([]);
    // A field added in a later version does not break a consumer validating with today's schema.
    expect(
      schemaProblems('routed-message', {
        ...routed,
        addedLater: 1,
        enrichment: { ...routed.enrichment, addedLater: 2 },
      }),
    ).toEqual([]);
  });

  it('refuse what a consumer must not take for a message of the relay', () => {
    const event = envelopeFor(tenantId, docsIncident, 'poll');
    const { eventId: _eventId, ...noEventId } = event;
    expect(schemaProblems('incident-event', noEventId)).toContain("(message): must have required property 'eventId'");
    expect(
      schemaProblems('incident-event', { ...event, incidentRef: { blobUrl: 'https://a.blob.core.windows.net/c/b' } }),
    ).not.toEqual([]);
    const { incident: _incident, ...neither } = event;
    expect(schemaProblems('incident-event', neither)).not.toEqual([]);
    expect(schemaProblems('incident-event', { ...event, schema: 'defender-relay.incident.v2' })).not.toEqual([]);
    expect(schemaProblems('incident-event', { ...event, incidentRef: undefined, incident: undefined })).not.toEqual([]);
    const routed = routedMessageFor(
      event,
      docsIncident,
      deriveEnrichment(docsIncident, { tenantId }),
      { name: 'r' },
      'd',
    );
    expect(
      schemaProblems('routed-message', { ...routed, enrichment: { ...routed.enrichment, highestSeverity: 'Severe' } }),
    ).not.toEqual([]);
    expect(schemaProblems('routed-message', { ...routed, route: { name: 'r' } })).not.toEqual([]);
    expect(
      schemaProblems('webhook-headers', {
        'content-type': 'application/json',
        'x-relay-event-id': 'e',
        'x-relay-signature': 'sha256=abc',
      }),
    ).not.toEqual([]);
    expect(schemaProblems('dead-letter', { failedAt: 'x', message: {} })).not.toEqual([]);
  });
});
