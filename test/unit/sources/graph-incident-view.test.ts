import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generateIncidents } from '../../../local/defender/generator.js';
import { ENTITY_FIELDS, type Incident as DefenderIncident } from '../../../local/defender/types.js';
import {
  toClassification,
  toDetectionSource,
  toDetermination,
  toGraphIncident,
  toServiceSource,
  toSeverity,
} from '../../../local/graph/mapping.js';
import { ALERT_DETERMINATIONS, DETECTION_SOURCES, SERVICE_SOURCES } from '../../../local/graph/types.js';
import { deriveEnrichment, portalUrlFor, type Enrichment } from '../../../shared/enrich/enrichment.js';
import { loadRoutingRules, selectRoutes, type RoutingTable } from '../../../shared/route/routing.js';
import {
  ALERT_STATUSES,
  CLASSIFICATIONS,
  DETERMINATIONS,
  INCIDENT_STATUSES,
  SEVERITIES,
  isRecord,
} from '../../../shared/sources/defender/incident-types.js';
import { defenderViewOf, graphIncidentVersion, graphPortalUrl } from '../../../shared/sources/graph/incident-view.js';
import { fuzzValue, hostileString, POLLUTING_KEYS, Rng } from '../../hostile/fuzz.js';

const TENANTS = [
  '8d2a6f0e-1c3b-4e5f-9a7b-2c4d6e8f0a1b',
  '3f9b2c1d-7e6a-4b5c-8d9e-0a1b2c3d4e5f',
  'c0ffee00-1234-4abc-9def-0123456789ab',
];
const TENANT = TENANTS[0]!;
const context = (tenantId = TENANT) => ({ tenantId, tenantDisplayName: 'Fabrikam' });
const WINDOW = { since: new Date('2026-10-01T00:00:00Z'), until: new Date('2026-10-31T00:00:00Z') };

/** What a Graph incident is once it has crossed a queue: JSON, nothing else. */
const overTheWire = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** Generated Defender incidents (three tenants, three seeds) and each as Graph writes it, as it arrives. */
function graphIncidents(): { tenantId: string; defender: DefenderIncident; graph: Record<string, unknown> }[] {
  return TENANTS.flatMap((tenantId) =>
    [1, 7, 'graph-view'].flatMap((seed) =>
      generateIncidents({ tenantId, count: 120, seed, ...WINDOW, redirectedShare: 0.1 }).map((defender) => ({
        tenantId,
        defender,
        graph: overTheWire(toGraphIncident(defender, tenantId)) as unknown as Record<string, unknown>,
      })),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// The shape every view has, whatever came in

const INCIDENT_KEYS = [
  'incidentId',
  'incidentUri',
  'redirectIncidentId',
  'incidentName',
  'createdTime',
  'lastUpdateTime',
  'assignedTo',
  'classification',
  'determination',
  'status',
  'severity',
  'tags',
  'comments',
  'alerts',
].sort();
const ALERT_KEYS = [
  'alertId',
  'incidentId',
  'serviceSource',
  'creationTime',
  'lastUpdatedTime',
  'resolvedTime',
  'firstActivity',
  'lastActivity',
  'title',
  'description',
  'category',
  'status',
  'severity',
  'investigationState',
  'classification',
  'determination',
  'detectionSource',
  'detectorId',
  'assignedTo',
  'actorName',
  'threatFamilyName',
  'mitreTechniques',
  'devices',
  'entities',
].sort();
const DEVICE_KEYS = [
  'mdatpDeviceId',
  'aadDeviceId',
  'deviceDnsName',
  'osPlatform',
  'version',
  'osBuild',
  'healthStatus',
  'riskScore',
  'rbacGroupName',
  'rbacGroupId',
  'firstSeen',
  'tags',
  'defenderAvStatus',
  'onboardingStatus',
  'vmMetadata',
].sort();
const ENTITY_KEYS = ['entityType', 'evidenceCreationTime', 'verdict', 'remediationStatus', ...ENTITY_FIELDS].sort();
const ENTITY_TYPES = [
  'User',
  'Ip',
  'Url',
  'File',
  'Process',
  'MailBox',
  'MailMessage',
  'MailCluster',
  'Registry',
  'SecurityGroup',
  'CloudApplication',
];

const keysOf = (value: object) => Object.keys(value).sort();
const isTextOrNull = (value: unknown) => value === null || typeof value === 'string';
const isNumberOrNull = (value: unknown) => value === null || (typeof value === 'number' && Number.isFinite(value));
const oneOfOrNull = (names: readonly string[], value: unknown) =>
  value === null || (typeof value === 'string' && names.includes(value));
const isStringList = (value: unknown) => Array.isArray(value) && value.every((item) => typeof item === 'string');

/** Every object and array the input holds (inputs here are JSON of bounded depth). */
function objectsIn(value: unknown): Set<object> {
  const seen = new Set<object>();
  const stack = [value];
  while (stack.length > 0) {
    const next = stack.pop();
    if (typeof next !== 'object' || next === null || seen.has(next)) continue;
    seen.add(next);
    for (const child of Object.values(next)) stack.push(child);
  }
  return seen;
}

/** The view is Defender's shape with the right types, plain objects of its own, and never an object of the input. */
function expectDefenderShape(view: Record<string, unknown>, input: unknown): void {
  const fromInput = objectsIn(input);
  for (const own of objectsIn(view)) expect(fromInput.has(own)).toBe(false);
  for (const own of objectsIn(view)) expect([Object.prototype, Array.prototype]).toContain(Object.getPrototypeOf(own));
  expect(keysOf(view)).toEqual(INCIDENT_KEYS);
  expect(isNumberOrNull(view.incidentId) && isNumberOrNull(view.redirectIncidentId)).toBe(true);
  for (const key of ['incidentUri', 'incidentName', 'createdTime', 'lastUpdateTime', 'assignedTo'])
    expect(isTextOrNull(view[key])).toBe(true);
  expect(oneOfOrNull(INCIDENT_STATUSES, view.status)).toBe(true);
  expect(oneOfOrNull(SEVERITIES, view.severity)).toBe(true);
  expect(oneOfOrNull(CLASSIFICATIONS, view.classification)).toBe(true);
  expect(oneOfOrNull(DETERMINATIONS, view.determination)).toBe(true);
  expect(isStringList(view.tags)).toBe(true);
  for (const comment of view.comments as Record<string, unknown>[]) {
    expect(keysOf(comment)).toEqual(['comment', 'createdBy', 'createdTime']);
    expect(Object.values(comment).every(isTextOrNull)).toBe(true);
  }
  for (const alert of view.alerts as Record<string, unknown>[]) {
    expect(keysOf(alert)).toEqual(ALERT_KEYS);
    expect(oneOfOrNull(ALERT_STATUSES, alert.status)).toBe(true);
    expect(oneOfOrNull(SEVERITIES, alert.severity)).toBe(true);
    expect(oneOfOrNull(CLASSIFICATIONS, alert.classification)).toBe(true);
    expect(oneOfOrNull(DETERMINATIONS, alert.determination)).toBe(true);
    expect(isStringList(alert.mitreTechniques)).toBe(true);
    for (const device of alert.devices as Record<string, unknown>[]) {
      expect(keysOf(device)).toEqual(DEVICE_KEYS);
      expect(isNumberOrNull(device.osBuild) && isNumberOrNull(device.rbacGroupId)).toBe(true);
      expect(device.vmMetadata === null || isRecord(device.vmMetadata)).toBe(true);
    }
    for (const entity of alert.entities as Record<string, unknown>[]) {
      expect(keysOf(entity)).toEqual(ENTITY_KEYS);
      expect(ENTITY_TYPES).toContain(entity.entityType);
      for (const [key, value] of Object.entries(entity))
        expect(key === 'processId' || key === 'parentProcessId' ? isNumberOrNull(value) : isTextOrNull(value)).toBe(
          true,
        );
    }
  }
  expect(() => JSON.stringify(view)).not.toThrow();
}

/** Everything the module exports, on one input: none may throw, and the view must be in shape. */
function expectSafe(input: unknown): void {
  const view = defenderViewOf(input as Record<string, unknown>);
  expectDefenderShape(view, input);
  const version = graphIncidentVersion(input);
  expect('problem' in version ? typeof version.problem : typeof version.incidentId).toMatch(/^(string|number)$/);
  const url = graphPortalUrl(input as Record<string, unknown>);
  expect(url === undefined || url.startsWith('https://security.microsoft.com/')).toBe(true);
  const enrichment = deriveEnrichment(view, context());
  expect(enrichment.incidentId).toBe(view.incidentId);
}

const GRAPH_FIELDS = [
  '@odata.type',
  'id',
  'displayName',
  'status',
  'severity',
  'classification',
  'determination',
  'customTags',
  'tags',
  'comments',
  'alerts',
  'evidence',
  'redirectIncidentId',
  'lastUpdateDateTime',
  'incidentWebUrl',
  'serviceSource',
  'detectionSource',
  'mitreTechniques',
  'userAccount',
  'fileDetails',
  'imageFile',
  'mdeDeviceId',
  'riskScore',
  'vmMetadata',
  'ipAddress',
  'url',
  'primaryAddress',
];
const EVIDENCE_TYPES = [
  'deviceEvidence',
  'userEvidence',
  'ipEvidence',
  'urlEvidence',
  'fileEvidence',
  'processEvidence',
  'mailboxEvidence',
  'analyzedMessageEvidence',
  'mailClusterEvidence',
  'registryKeyEvidence',
  'registryValueEvidence',
  'securityGroupEvidence',
  'cloudApplicationEvidence',
  'oauthApplicationEvidence',
  '__proto__',
  'constructor',
].map((type) => `#microsoft.graph.security.${type}`);

/** A Graph incident whose every value is, by chance, right or a random JSON value. */
function fuzzedGraphIncident(rng: Rng): Record<string, unknown> {
  const maybe = (valid: () => unknown) => (rng.chance(0.6) ? valid() : fuzzValue(rng, 2, GRAPH_FIELDS));
  const list = (item: () => unknown) => maybe(() => Array.from({ length: rng.int(4) }, item));
  const text = () => maybe(() => (rng.chance(0.5) ? rng.pick(['x', 'T1003', 'high', 'active']) : hostileString(rng)));
  const record = (fields: string[]) => maybe(() => Object.fromEntries(fields.map((name) => [name, text()])));
  const evidence = () =>
    maybe(() => ({
      '@odata.type': maybe(() => rng.pick(EVIDENCE_TYPES)),
      createdDateTime: text(),
      verdict: maybe(() => rng.pick(['malicious', 'noThreatsFound', 'unknownFutureValue', 'toString'])),
      mdeDeviceId: text(),
      deviceDnsName: text(),
      riskScore: maybe(() => rng.pick(['high', 'none', 'unknownFutureValue'])),
      osBuild: maybe(() => rng.int(30000)),
      vmMetadata: record(['vmId', 'cloudProvider']),
      ipAddress: text(),
      url: text(),
      userAccount: record(['accountName', 'domainName', 'azureAdUserId', 'userPrincipalName']),
      fileDetails: record(['sha1', 'sha256', 'fileName']),
      imageFile: record(['sha1', 'sha256', 'fileName']),
      processId: maybe(() => rng.int(9999)),
      primaryAddress: text(),
      p2Sender: record(['emailAddress']),
    }));
  const alert = () =>
    maybe(() => ({
      id: text(),
      incidentId: maybe(() => String(rng.int(1e6))),
      status: maybe(() => rng.pick(['new', 'inProgress', 'resolved', 'unknown', 'unknownFutureValue'])),
      severity: maybe(() => rng.pick(['high', 'low', 'unknown'])),
      serviceSource: maybe(() => rng.pick(SERVICE_SOURCES)),
      detectionSource: maybe(() => rng.pick(DETECTION_SOURCES)),
      category: text(),
      mitreTechniques: list(text),
      firstActivityDateTime: maybe(() => '2026-10-02T03:04:05.1234567Z'),
      evidence: list(evidence),
    }));
  return {
    id: maybe(() => String(rng.int(1e9))),
    displayName: text(),
    lastUpdateDateTime: maybe(() => '2026-10-02T03:04:05.1234567Z'),
    incidentWebUrl: maybe(() => `https://security.microsoft.com/incidents/${rng.int(1e6)}`),
    status: maybe(() => rng.pick(['active', 'awaitingAction', 'redirected', 'unknownFutureValue'])),
    severity: maybe(() => rng.pick(['high', 'medium', 'unknown'])),
    classification: maybe(() => rng.pick(['truePositive', 'unknown'])),
    determination: maybe(() => rng.pick(ALERT_DETERMINATIONS)),
    customTags: list(text),
    comments: list(() => record(['comment', 'createdByDisplayName', 'createdDateTime'])),
    redirectIncidentId: maybe(() => String(rng.int(1e6))),
    alerts: list(alert),
  };
}

// Written first: whatever arrives, nothing throws, nothing recurses, nothing is polluted, and the view keeps its shape.
describe('defenderViewOf and friends on hostile input', () => {
  it.each([
    ['null', null],
    ['undefined', undefined],
    ['a string', 'incident'],
    ['a number', 42],
    ['a boolean', true],
    ['an array', [{ id: '1' }]],
    ['an empty object', {}],
    ['a null-prototype object', Object.assign(Object.create(null) as object, { id: '5', status: 'active' })],
    ['alerts as a string', { id: '5', alerts: 'none' }],
    ['alerts holding junk', { id: '5', alerts: [null, 1, 'a', [], { evidence: 'x', mitreTechniques: 7 }] }],
    [
      'wrong types everywhere',
      {
        id: 12,
        displayName: ['x'],
        status: {},
        severity: 4,
        classification: true,
        determination: null,
        customTags: 'VIP',
        comments: { comment: 'x' },
        redirectIncidentId: 'x',
        createdDateTime: 5,
        alerts: [
          {
            id: {},
            status: 3,
            severity: ['high'],
            serviceSource: 9,
            mitreTechniques: 'T1003',
            evidence: [
              null,
              7,
              { '@odata.type': 5 },
              { '@odata.type': '#microsoft.graph.security.deviceEvidence', vmMetadata: 'azure', osBuild: '22424' },
              { '@odata.type': '#microsoft.graph.security.userEvidence', userAccount: 'SYSTEM' },
              { '@odata.type': '#microsoft.graph.security.fileEvidence', fileDetails: [{ sha1: 'aa' }] },
            ],
          },
        ],
      },
    ],
  ])('%s', (_label, input) => {
    expectSafe(input);
  });

  it('reads nothing a JSON prototype key smuggles in, and pollutes nothing', () => {
    const input = JSON.parse(`{
      "__proto__": { "status": "active", "severity": "high", "alerts": [{ "id": "a" }] },
      "constructor": { "prototype": { "polluted": "yes" } },
      "id": "__proto__",
      "status": "constructor",
      "severity": "toString",
      "classification": "__proto__",
      "determination": "hasOwnProperty",
      "customTags": ["__proto__", "constructor"],
      "alerts": [{
        "__proto__": { "evidence": [{ "@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "10.0.0.1" }] },
        "status": "valueOf",
        "serviceSource": "__proto__",
        "evidence": [
          { "@odata.type": "#microsoft.graph.security.__proto__", "ipAddress": "10.0.0.2" },
          { "@odata.type": "#microsoft.graph.security.constructor", "url": "https://x.example" },
          { "@odata.type": "#microsoft.graph.security.ipEvidence", "__proto__": { "ipAddress": "10.0.0.3" } },
          { "@odata.type": "#microsoft.graph.security.userEvidence", "userAccount": { "__proto__": { "accountName": "smuggled" } } }
        ]
      }]
    }`) as Record<string, unknown>;
    expectSafe(input);
    const view = defenderViewOf(input);
    expect(view).toMatchObject({
      incidentId: null,
      status: null,
      severity: null,
      classification: null,
      determination: null,
      tags: ['__proto__', 'constructor'],
    });
    const [alert] = view.alerts as Record<string, unknown>[];
    // An open list keeps an unknown name (raised first letter): a plain string value, never a lookup.
    expect(alert).toMatchObject({ status: null, serviceSource: '__proto__', devices: [] });
    const entities = alert!.entities as Record<string, unknown>[];
    expect(entities.map((e) => [e.entityType, e.ipAddress, e.accountName])).toEqual([
      ['Ip', null, null],
      ['User', null, null],
    ]);
    expect(deriveEnrichment(view, context()).entities.ips).toEqual([]);
    expect(Object.keys(Object.prototype)).toEqual([]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('survives 2,000 random JSON values as incidents, with Graph field names and prototype keys', () => {
    const rng = new Rng(20261031);
    for (let i = 0; i < 2000; i++) expectSafe(fuzzValue(rng, 0, GRAPH_FIELDS));
  });

  it('survives 1,500 Graph-like incidents whose every value is, by chance, a random JSON value', () => {
    const rng = new Rng(4242);
    for (let i = 0; i < 1500; i++) expectSafe(fuzzedGraphIncident(rng));
  });

  it('survives generated incidents with one value replaced by a random one, anywhere', () => {
    const rng = new Rng(77);
    const incidents = graphIncidents().slice(0, 200);
    for (const { graph } of incidents) {
      for (let k = 0; k < 5; k++) {
        const copy = overTheWire(graph);
        // Walk down a random path, then replace what is there.
        let holder: Record<string, unknown> | unknown[] = copy;
        let key: string | number = rng.pick(Object.keys(copy));
        for (let depth = 0; depth < 6; depth++) {
          const next: unknown = (holder as Record<string, unknown>)[key];
          if (typeof next !== 'object' || next === null) break;
          const keys = Object.keys(next);
          if (keys.length === 0 || rng.chance(0.3)) break;
          holder = next as Record<string, unknown>;
          key = Array.isArray(next) ? rng.int(next.length) : rng.pick(keys);
        }
        (holder as Record<string | number, unknown>)[key] = fuzzValue(rng, 0, GRAPH_FIELDS);
        expectSafe(copy);
      }
    }
  });

  it('maps huge lists whole, without recursion or a cap of its own (deriveEnrichment caps what it keeps)', () => {
    const ips = Array.from({ length: 100_000 }, (_, k) => ({
      '@odata.type': '#microsoft.graph.security.ipEvidence',
      ipAddress: `10.${k >> 16}.${(k >> 8) & 255}.${k & 255}`,
    }));
    const techniques = Array.from({ length: 200_000 }, (_, k) => `T${1000 + (k % 9000)}`);
    const tags = Array.from({ length: 200_000 }, (_, k) => `tag-${k}`);
    const alerts = Array.from({ length: 20_000 }, (_, k) => ({ id: `a${k}`, status: 'new', severity: 'low' }));
    // Nesting far deeper than any recursive reader could follow, where a string is expected.
    let deep: Record<string, unknown> = { end: true };
    for (let depth = 0; depth < 100_000; depth++) deep = { fileName: deep };
    const input = {
      id: '1',
      customTags: tags,
      alerts: [
        {
          id: 'big',
          mitreTechniques: techniques,
          evidence: [...ips, { '@odata.type': '#microsoft.graph.security.fileEvidence', fileDetails: deep }],
        },
        ...alerts,
      ],
    };
    const started = Date.now();
    const view = defenderViewOf(input);
    const [big] = view.alerts as Record<string, unknown>[];
    expect((view.alerts as unknown[]).length).toBe(20_001);
    expect((view.tags as unknown[]).length).toBe(200_000);
    expect((big!.mitreTechniques as unknown[]).length).toBe(200_000);
    expect((big!.entities as Record<string, unknown>[]).length).toBe(100_001);
    expect((big!.entities as Record<string, unknown>[]).at(-1)).toMatchObject({ entityType: 'File', fileName: null });
    const enrichment = deriveEnrichment(view, context());
    expect(enrichment.entities).toMatchObject({ truncated: true, totals: { ips: 100_000 } });
    expect(enrichment.entities.ips).toHaveLength(50);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

// ---------------------------------------------------------------------------------------------
// The tables

describe('defenderViewOf: Graph members back to Defender spellings', () => {
  const incident = (fields: Record<string, unknown>) => defenderViewOf({ id: '1', ...fields });
  const alertView = (fields: Record<string, unknown>) =>
    (defenderViewOf({ id: '1', alerts: [fields] }).alerts as Record<string, unknown>[])[0]!;

  it.each([
    ['active', 'Active'],
    ['inProgress', 'InProgress'],
    ['resolved', 'Resolved'],
    ['redirected', 'Redirected'],
    // "requires actions from Defender Experts awaiting your action": open, so it routes and scores as Active.
    ['awaitingAction', 'Active'],
    ['unknownFutureValue', null],
    ['Active', 'Active'], // the docs' first list example writes PascalCase
    ['INPROGRESS', 'InProgress'],
    ['closed', null],
    ['constructor', null],
  ])('incident status %s → %s', (graph, defender) => {
    expect(incident({ status: graph }).status).toBe(defender);
  });

  it.each([
    ['unknown', 'UnSpecified'],
    ['informational', 'Informational'],
    ['low', 'Low'],
    ['medium', 'Medium'],
    ['high', 'High'],
    ['unknownFutureValue', null],
    ['UnSpecified', 'UnSpecified'],
    ['critical', null],
  ])('severity %s → %s (incident and alert)', (graph, defender) => {
    expect(incident({ severity: graph }).severity).toBe(defender);
    expect(alertView({ severity: graph }).severity).toBe(defender);
  });

  it.each([
    ['unknown', 'Unknown', null],
    ['falsePositive', 'FalsePositive', 'FalsePositive'],
    ['truePositive', 'TruePositive', 'TruePositive'],
    ['informationalExpectedActivity', 'InformationalExpectedActivity', 'InformationalExpectedActivity'],
    ['unknownFutureValue', null, null],
  ])(
    'classification %s → %s on the incident, %s on an alert (Defender leaves an unclassified alert null)',
    (g, i, a) => {
      expect(incident({ classification: g }).classification).toBe(i);
      expect(alertView({ classification: g }).classification).toBe(a);
    },
  );

  it.each([
    ['unknown', 'NotAvailable'],
    ['apt', 'Apt'],
    ['malware', 'Malware'],
    ['securityPersonnel', 'SecurityPersonnel'],
    ['securityTesting', 'SecurityTesting'],
    ['unwantedSoftware', 'UnwantedSoftware'],
    ['other', 'Other'],
    ['multiStagedAttack', 'MultiStagedAttack'],
    ['compromisedAccount', 'CompromisedAccount'],
    ['phishing', 'Phishing'],
    ['maliciousUserActivity', 'MaliciousUserActivity'],
    ['notMalicious', 'NotMalicious'],
    ['notEnoughDataToValidate', 'NotEnoughDataToValidate'],
    ['confirmedActivity', 'ConfirmedActivity'],
    ['lineOfBusinessApplication', 'LineOfBusinessApplication'],
    ['unknownFutureValue', null],
    // The older names the resource page still lists.
    ['compromisedUser', 'CompromisedUser'],
    ['clean', 'Clean'],
    ['insufficientData', 'InsufficientData'],
    ['confirmedUserActivity', 'ConfirmedUserActivity'],
    // Defender's own spelling, should a sender use it.
    ['NoEnoughDataToValidate', 'NoEnoughDataToValidate'],
  ])('determination %s → %s', (graph, defender) => {
    expect(incident({ determination: graph }).determination).toBe(defender);
  });

  it('has a Defender determination for every member of the v1.0 schema but the sentinel', () => {
    for (const member of ALERT_DETERMINATIONS) {
      const view = incident({ determination: member }).determination;
      if (member === 'unknownFutureValue') expect(view).toBeNull();
      else expect(DETERMINATIONS).toContain(view);
    }
  });

  it.each([
    ['new', 'New'],
    ['inProgress', 'InProgress'],
    ['resolved', 'Resolved'],
    ['unknown', null],
    ['unknownFutureValue', null],
  ])('alert status %s → %s', (graph, defender) => {
    expect(alertView({ status: graph }).status).toBe(defender);
  });

  it.each([
    ['microsoftDefenderForEndpoint', 'MicrosoftDefenderForEndpoint'],
    ['microsoftDefenderForIdentity', 'MicrosoftDefenderForIdentity'],
    ['microsoftDefenderForCloudApps', 'MicrosoftCloudAppSecurity'],
    ['microsoftDefenderForOffice365', 'MicrosoftDefenderForOffice'],
    ['microsoft365Defender', 'Microsoft365Defender'],
    ['azureAdIdentityProtection', 'AzureAdIdentityProtection'],
    ['microsoftAppGovernance', 'AppGovernance'],
    ['dataLossPrevention', 'DataLossPrevention'],
    ['unknown', null],
    ['unknownFutureValue', null],
    // Evolvable members Defender has no name for: kept, PascalCase like Defender's names.
    ['microsoftSentinel', 'MicrosoftSentinel'],
    ['microsoftDefenderForCloud', 'MicrosoftDefenderForCloud'],
    ['microsoftSecurityForAI', 'MicrosoftSecurityForAI'],
  ])('serviceSource %s → %s', (graph, defender) => {
    expect(alertView({ serviceSource: graph }).serviceSource).toBe(defender);
  });

  it('gives back every Defender service and detection source the stand-in maps (CustomTi as CustomerTI)', () => {
    for (const source of [
      'MicrosoftDefenderForEndpoint',
      'MicrosoftDefenderForIdentity',
      'MicrosoftCloudAppSecurity',
      'MicrosoftDefenderForOffice',
      'Microsoft365Defender',
      'AzureAdIdentityProtection',
      'AppGovernance',
      'DataLossPrevention',
    ])
      expect(alertView({ serviceSource: toServiceSource(source) }).serviceSource).toBe(source);
    for (const source of [
      'WindowsDefenderAtp',
      'WindowsDefenderAv',
      'WindowsDefenderSmartScreen',
      'CustomerTI',
      'AutomatedInvestigation',
      'ThreatExperts',
      'CustomDetection',
      'OfficeATP',
      'AzureAtp',
      'MCAS',
      'MTP',
      'AadIdentityProtection',
      'Manual',
    ])
      expect(alertView({ detectionSource: toDetectionSource(source) }).detectionSource).toBe(source);
    expect(alertView({ detectionSource: toDetectionSource('CustomTi') }).detectionSource).toBe('CustomerTI');
    for (const member of [...SERVICE_SOURCES, ...DETECTION_SOURCES]) {
      const view = alertView({ serviceSource: member, detectionSource: member });
      const none = member === 'unknown' || member === 'unknownFutureValue';
      expect(view.serviceSource === null).toBe(none);
      expect(view.detectionSource === null).toBe(none);
    }
  });

  it('gives back every Defender severity, classification and determination, or the synonym routing treats as it', () => {
    for (const severity of SEVERITIES) expect(incident({ severity: toSeverity(severity) }).severity).toBe(severity);
    for (const classification of CLASSIFICATIONS)
      expect(incident({ classification: toClassification(classification) }).classification).toBe(classification);
    const synonyms: Record<string, string> = {
      CompromisedUser: 'CompromisedAccount',
      Clean: 'NotMalicious',
      InsufficientData: 'NotEnoughDataToValidate',
      NoEnoughDataToValidate: 'NotEnoughDataToValidate',
      ConfirmedUserActivity: 'ConfirmedActivity',
    };
    for (const determination of DETERMINATIONS) {
      if (determination === 'NotEnoughDataToValidate') continue; // not a Defender name the stand-in maps
      expect(incident({ determination: toDetermination(determination) }).determination).toBe(
        synonyms[determination] ?? determination,
      );
    }
  });

  it('reads the tags and comments the docs example writes in Defender names, when the Graph names are absent', () => {
    const view = incident({
      tags: ['Demo'],
      comments: [{ comment: 'c', createdBy: 'a@contoso.com', createdTime: '2021-09-30T12:07:37.2756993Z' }],
    });
    expect(view).toMatchObject({
      tags: ['Demo'],
      comments: [{ comment: 'c', createdBy: 'a@contoso.com', createdTime: '2021-09-30T12:07:37.2756993Z' }],
    });
    expect(incident({ customTags: ['A'], tags: ['B'] }).tags).toEqual(['A']);
  });

  it('maps an incident without $expand=alerts to no alerts, which deriveEnrichment flags as needing the full incident', () => {
    const view = incident({ status: 'active' });
    expect(view.alerts).toEqual([]);
    expect(deriveEnrichment(view, context()).needsFullIncident).toBe(true);
  });

  it('maps each evidence type the stand-in writes to its Defender entity, and leaves the others out', () => {
    const evidence = (type: string, fields: Record<string, unknown>) => ({
      '@odata.type': `#microsoft.graph.security.${type}`,
      createdDateTime: '2026-10-02T00:00:00Z',
      verdict: 'noThreatsFound',
      remediationStatus: 'prevented',
      ...fields,
    });
    const view = alertView({
      evidence: [
        evidence('mailboxEvidence', {
          displayName: 'Adele Vance',
          primaryAddress: 'adele@contoso.com',
          upn: null,
          userAccount: { azureAdUserId: 'A1', userPrincipalName: 'adele@contoso.com' },
        }),
        evidence('analyzedMessageEvidence', {
          p1Sender: { emailAddress: 'bounce@mail.example' },
          p2Sender: { emailAddress: 'billing@invoices.example' },
          recipientEmailAddress: 'adele@contoso.com',
          subject: 'Invoice',
          deliveryAction: 'Delivered',
          senderIp: '203.0.113.9',
        }),
        evidence('urlEvidence', { url: 'https://invoice.example/x' }),
        evidence('securityGroupEvidence', { securityGroupId: 'G1', displayName: 'Domain Admins' }),
        evidence('registryValueEvidence', {
          registryHive: 'HKEY_CURRENT_USER',
          registryKey: 'Run',
          registryValue: 'x.exe',
          registryValueType: 'String',
          mdeDeviceId: 'D1',
        }),
        evidence('mailClusterEvidence', { clusterBy: 'Url' }),
        evidence('oauthApplicationEvidence', { appId: 'X', displayName: 'App' }),
        { ipAddress: '10.9.9.9' },
      ],
    });
    const entities = view.entities as Record<string, unknown>[];
    expect(entities.map((e) => e.entityType)).toEqual([
      'MailBox',
      'MailMessage',
      'Url',
      'SecurityGroup',
      'Registry',
      'MailCluster',
    ]);
    expect(entities[0]).toMatchObject({
      mailboxDisplayName: 'Adele Vance',
      mailboxAddress: 'adele@contoso.com',
      userPrincipalName: 'adele@contoso.com',
      aadUserId: 'A1',
      verdict: 'Clean',
      remediationStatus: 'Prevented',
      evidenceCreationTime: '2026-10-02T00:00:00Z',
    });
    expect(entities[1]).toMatchObject({ sender: 'billing@invoices.example', recipient: 'adele@contoso.com' });
    expect(entities[1]!.ipAddress).toBeNull(); // the sender IP is an ipEvidence of its own, as in Defender
    expect(entities[3]).toMatchObject({ securityGroupId: 'G1', securityGroupName: 'Domain Admins' });
    expect(entities[4]).toMatchObject({ registryValue: 'x.exe', registryValueType: 'String', deviceId: 'D1' });
    expect(deriveEnrichment({ alerts: [view] }, context()).entities).toMatchObject({
      mailboxes: [{ mailboxAddress: 'adele@contoso.com', mailboxDisplayName: 'Adele Vance' }],
      urls: ['https://invoice.example/x'],
      users: [],
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Round trip: Defender → Graph (the stand-in's mapping) → the view

/** The Defender fields Graph has no property for (local/graph/mapping.ts drops them). */
function withoutWhatGraphLacks(incident: DefenderIncident): Record<string, unknown> {
  const copy = structuredClone(incident) as unknown as Record<string, unknown>;
  for (const alert of copy.alerts as Record<string, unknown>[]) {
    delete alert.investigationId; // no Graph counterpart
    delete alert.providerAlertId; // the stand-in's; Defender's documented alert has none, and the view keeps Graph's own fields out
    for (const device of alert.devices as Record<string, unknown>[]) delete device.osProcessor; // no deviceEvidence counterpart
  }
  return copy;
}

/** Rules on every field routing reads, all fan-out, so the whole set of matches is compared. */
function routingTable(): RoutingTable {
  const rule = (name: string, match: Record<string, unknown>) => ({
    name,
    match,
    mode: 'fan-out',
    destinations: ['q'],
  });
  return loadRoutingRules(
    {
      destinations: { q: { type: 'queue', queueName: 'routed-graph' } },
      rules: [
        rule('tenant', { tenant: [TENANTS[1]] }),
        rule('high', { severity: ['High'] }),
        rule('low-or-info', { severity: ['Low', 'Informational'] }),
        rule('active', { status: ['Active'] }),
        rule('in-progress', { status: ['InProgress'] }),
        rule('resolved', { status: ['Resolved'] }),
        rule('redirected', { status: ['Redirected'] }),
        rule('true-positive', { classification: ['TruePositive'] }),
        rule('false-positive', { classification: ['FalsePositive'] }),
        rule('expected', { classification: ['InformationalExpectedActivity'] }),
        rule('unclassified', { classification: ['Unknown'] }),
        rule('compromised', { determination: ['CompromisedUser'] }),
        rule('malware-or-phishing', { determination: ['Malware', 'Phishing'] }),
        rule('multi-stage', { determination: ['MultiStagedAttack'] }),
        rule('no-determination', { determination: ['NotAvailable'] }),
        rule('vip', { tags: ['vip'] }),
        rule('finance-or-pentest', { tags: ['Finance', 'Pentest'] }),
        rule('office', { serviceSource: ['MicrosoftDefenderForOffice'] }),
        rule('cloud-apps', { serviceSource: ['MicrosoftCloudAppSecurity'] }),
        rule('identity', { serviceSource: ['AzureAdIdentityProtection', 'MicrosoftDefenderForIdentity'] }),
        rule('credential-dumping', { mitreTechnique: ['T1003*'] }),
        rule('phishing-links', { mitreTechnique: ['T1566.*'] }),
        rule('urgent', { minPriority: 60 }),
        rule('endpoint-high-active', {
          severity: ['High'],
          status: ['Active', 'InProgress'],
          serviceSource: ['MicrosoftDefenderForEndpoint'],
          mitreTechnique: ['T1???'],
        }),
      ],
      defaultRoute: { destinations: ['q'] },
    },
    { allowedHosts: [] },
  );
}

describe('round trip: a generated Defender incident, mapped to Graph by the stand-in and viewed back', () => {
  const cases = graphIncidents();

  it('gives back the Defender incident, but for the fields Graph lacks', () => {
    expect(cases.length).toBe(1080);
    for (const { defender, graph } of cases) expect(defenderViewOf(graph)).toEqual(withoutWhatGraphLacks(defender));
  });

  it('gives the same enrichment, every field, as the Defender incident', () => {
    const kinds = new Set<string>();
    for (const { tenantId, defender, graph } of cases) {
      const fromGraph = deriveEnrichment(defenderViewOf(graph), context(tenantId));
      expect(fromGraph).toEqual(deriveEnrichment(defender, context(tenantId)));
      for (const [kind, total] of Object.entries(fromGraph.entities.totals)) if (total > 0) kinds.add(kind);
      if (fromGraph.redirectedTo) kinds.add('redirectedTo');
    }
    // The comparison covered every kind of entity and merged incidents.
    expect([...kinds].sort()).toEqual(['devices', 'fileHashes', 'ips', 'mailboxes', 'redirectedTo', 'urls', 'users']);
  });

  it('takes the same routes as the Defender incident, for rules on every field routing reads', () => {
    const table = routingTable();
    const matched = new Map<string, number>();
    for (const { tenantId, defender, graph } of cases) {
      const view = defenderViewOf(graph);
      const viaGraph = selectRoutes(table, {
        tenantId,
        incident: view,
        enrichment: deriveEnrichment(view, context(tenantId)),
      });
      const viaDefender = selectRoutes(table, {
        tenantId,
        incident: defender as unknown as Record<string, unknown>,
        enrichment: deriveEnrichment(defender, context(tenantId)),
      });
      expect(viaGraph).toEqual(viaDefender);
      for (const route of viaGraph) matched.set(route.name, (matched.get(route.name) ?? 0) + 1);
    }
    // Every rule matched some incidents and missed others: no comparison was vacuous.
    for (const rule of table.rules) {
      expect(matched.get(rule.name) ?? 0, rule.name).toBeGreaterThan(0);
      expect(matched.get(rule.name) ?? 0, rule.name).toBeLessThan(cases.length);
    }
  });

  it('keeps the versions: graphIncidentVersion gives the Defender id and lastUpdateTime', () => {
    for (const { defender, graph } of cases)
      expect(graphIncidentVersion(graph)).toEqual({
        incidentId: defender.incidentId,
        lastUpdateTime: defender.lastUpdateTime,
      });
  });

  // Documented exceptions, on Microsoft's own Defender example incidents (test/fixtures/incidents/docs-example.json):
  // the stand-in's mapping gives Graph one member per service, so a second Defender name for a service comes back as
  // the first (MicrosoftDefenderATP → MicrosoftDefenderForEndpoint), and a name the mapping does not know as a service
  // source (OfficeATP, which Defender's own example uses as both service and detection source) becomes Graph's
  // `unknown`, which names no service. Every other enrichment field is the same.
  it('gives the same enrichment for the Defender docs example incidents, but for the service names Graph merges or lacks', () => {
    const docs = JSON.parse(
      readFileSync(new URL('../../fixtures/incidents/docs-example.json', import.meta.url), 'utf8'),
    ) as { value: DefenderIncident[] };
    const serviceSources = new Map<number, [string[], string[]]>();
    for (const defender of docs.value) {
      const view = defenderViewOf(overTheWire(toGraphIncident(defender, TENANT)) as unknown as Record<string, unknown>);
      const fromGraph: Enrichment = deriveEnrichment(view, context());
      const fromDefender: Enrichment = deriveEnrichment(defender, context());
      expect({ ...fromGraph, serviceSources: [] }).toEqual({ ...fromDefender, serviceSources: [] });
      serviceSources.set(defender.incidentId, [fromDefender.serviceSources, fromGraph.serviceSources]);
    }
    expect(Object.fromEntries(serviceSources)).toEqual({
      924565: [['MicrosoftCloudAppSecurity'], ['MicrosoftCloudAppSecurity']],
      924521: [['MicrosoftDefenderATP'], ['MicrosoftDefenderForEndpoint']],
      924518: [['OfficeATP'], []],
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Microsoft's Graph example

/**
 * The response of "Example 2: List all incidents with their alerts" (`GET /security/incidents?$expand=alerts`)
 * in microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/security-list-incidents.md (commit
 * 0113240af3b9c33ee9076b502e0c391e0aa87745), copied as published but for two trailing commas removed so that it
 * parses (after "Referred in command line" and after the registry key evidence's `tags`). The example is uneven in
 * ways a reader must survive: it writes `tags` where the schema has `customTags`, its comment in Defender's names
 * (createdBy, createdTime) rather than alertComment's, an alert whose incidentId (28282) is not the incident's
 * (2972395), and an incidentWebUrl whose tid is not the tenantId.
 */
const graphDocs = JSON.parse(
  readFileSync(new URL('../../fixtures/incidents/graph-docs-example.json', import.meta.url), 'utf8'),
) as { value: Record<string, unknown>[] };
const graphDocsIncident = graphDocs.value[0]!;

const DEVICE_ID = '73e7e2de709dff64ef64b1d0c30e67fab63279db';
const SHA1 = '5f1e8acedc065031aad553b710838eb366cfee9a';
const SHA256 = '8963a19fb992ad9a76576c5638fd68292cffb9aaac29eb8285f9abf6196a7dec';
const EVIDENCE_TIME = '2021-04-27T12:19:27.7211305Z';

/** A Defender entity as the API writes it: every type-specific field present, null when unused. */
const entity = (entityType: string, fields: Record<string, unknown>) => ({
  entityType,
  evidenceCreationTime: EVIDENCE_TIME,
  verdict: 'Unknown',
  remediationStatus: 'None',
  ...Object.fromEntries(ENTITY_FIELDS.map((name) => [name, null])),
  ...fields,
});

describe("defenderViewOf on Microsoft's Graph example incident", () => {
  it('views the incident, its alert, device and evidence in Defender names', () => {
    const before = structuredClone(graphDocsIncident);
    const view = defenderViewOf(graphDocsIncident);
    expect(graphDocsIncident).toEqual(before);
    expect(view).toEqual({
      incidentId: 2972395,
      incidentUri: 'https://security.microsoft.com/incidents/2972395?tid=12f988bf-16f1-11af-11ab-1d7cd011db47',
      redirectIncidentId: null,
      incidentName:
        'Multi-stage incident involving Initial access & Command and control on multiple endpoints reported by multiple sources',
      createdTime: '2021-08-13T08:43:35.5533333Z',
      lastUpdateTime: '2021-09-30T09:35:45.1133333Z',
      assignedTo: 'KaiC@contoso.onmicrosoft.com',
      classification: 'TruePositive',
      determination: 'MultiStagedAttack',
      status: 'Active',
      severity: 'Medium',
      tags: ['Demo'],
      comments: [
        {
          comment: 'Demo incident',
          createdBy: 'DavidS@contoso.onmicrosoft.com',
          createdTime: '2021-09-30T12:07:37.2756993Z',
        },
      ],
      alerts: [
        {
          alertId: 'da637551227677560813_-961444813',
          incidentId: 28282,
          serviceSource: 'MicrosoftDefenderForEndpoint',
          creationTime: EVIDENCE_TIME,
          lastUpdatedTime: '2021-05-02T14:19:01.3266667Z',
          resolvedTime: null,
          firstActivity: '2021-04-26T07:45:50.116Z',
          lastActivity: '2021-05-02T07:56:58.222Z',
          title: 'Suspicious execution of hidden file',
          description:
            'A hidden file has been launched. This activity could indicate a compromised host. Attackers often hide files associated with malicious tools to evade file system inspection and defenses.',
          category: 'DefenseEvasion',
          status: 'New',
          severity: 'Low',
          investigationState: null,
          classification: null,
          determination: null,
          detectionSource: 'WindowsDefenderAv',
          detectorId: 'e0da400f-affd-43ef-b1d5-afc2eb6f2756',
          assignedTo: null,
          actorName: null,
          threatFamilyName: null,
          mitreTechniques: ['T1564.001'],
          devices: [
            {
              mdatpDeviceId: DEVICE_ID,
              aadDeviceId: null,
              deviceDnsName: 'tempDns',
              osPlatform: 'Windows10',
              version: 'Other',
              osBuild: 22424,
              healthStatus: 'Active',
              riskScore: 'Medium',
              rbacGroupName: 'UnassignedGroup',
              rbacGroupId: 75,
              firstSeen: '2020-09-12T07:28:32.4321753Z',
              tags: ['Test Machine'],
              defenderAvStatus: 'Unknown',
              onboardingStatus: 'Onboarded',
              vmMetadata: {
                vmId: 'ca1b0d41-5a3b-4d95-b48b-f220aed11d78',
                cloudProvider: 'Azure',
                resourceId:
                  '/subscriptions/8700d3a3-3bb7-4fbe-a090-488a1ad04161/resourceGroups/WdatpApi-EUS-STG/providers/Microsoft.Compute/virtualMachines/NirLaviTests',
                subscriptionId: '8700d3a3-3bb7-4fbe-a090-488a1ad04161',
              },
            },
          ],
          entities: [
            entity('File', {
              sha1: SHA1,
              sha256: SHA256,
              fileName: 'MsSense.exe',
              filePath: 'C:\\Program Files\\temp',
              deviceId: DEVICE_ID,
            }),
            entity('Process', {
              sha1: SHA1,
              sha256: SHA256,
              fileName: 'MsSense.exe',
              filePath: 'C:\\Program Files\\temp',
              processId: 4780,
              processCommandLine: '"MsSense.exe"',
              processCreationTime: '2021-08-12T12:43:19.0772577Z',
              parentProcessId: 668,
              parentProcessCreationTime: '2021-08-12T07:39:09.0909239Z',
              accountName: 'SYSTEM',
              domainName: 'NT AUTHORITY',
              userSid: 'S-1-5-18',
              deviceId: DEVICE_ID,
            }),
            entity('Registry', {
              registryHive: 'HKEY_LOCAL_MACHINE',
              registryKey: 'SYSTEM\\CONTROLSET001\\CONTROL\\WMI\\AUTOLOGGER\\SENSEAUDITLOGGER',
            }),
          ],
        },
      ],
    });
    // Graph's own properties stay out of the view.
    for (const own of ['tenantId', 'incidentWebUrl', 'systemTags', 'description', '@odata.type', 'displayName'])
      expect(view).not.toHaveProperty(own);
  });

  it('enriches it: the medium-risk device, one file hash for the file and its process, Defense Evasion', () => {
    expect(deriveEnrichment(defenderViewOf(graphDocsIncident), context())).toEqual({
      tenantId: TENANT,
      tenantDisplayName: 'Fabrikam',
      incidentId: 2972395,
      portalUrl: portalUrlFor(2972395, TENANT),
      alertCount: 1,
      activeAlertCount: 1,
      severities: ['Low', 'Medium'],
      highestSeverity: 'Medium',
      serviceSources: ['MicrosoftDefenderForEndpoint'],
      detectionSources: ['WindowsDefenderAv'],
      mitre: { techniques: ['T1564.001'], tactics: [{ id: 'TA0005', name: 'Defense Evasion' }] },
      categories: [],
      entities: {
        // SYSTEM runs the process: a Process entity's account, not a User entity.
        users: [],
        devices: [
          {
            mdatpDeviceId: DEVICE_ID,
            deviceDnsName: 'tempDns',
            osPlatform: 'Windows10',
            riskScore: 'Medium',
            healthStatus: 'Active',
          },
        ],
        // The device's ipInterfaces are not an entity in Defender's shape.
        ips: [],
        urls: [],
        fileHashes: [{ sha1: SHA1, sha256: SHA256, fileName: 'MsSense.exe' }],
        mailboxes: [],
        truncated: false,
        totals: { users: 0, devices: 1, ips: 0, urls: 0, fileHashes: 1, mailboxes: 0 },
      },
      firstActivity: '2021-04-26T07:45:50.1160000Z',
      lastActivity: '2021-05-02T07:56:58.2220000Z',
      priority: 30 + 15 + 2 + 10,
      priorityReasons: ['severity Medium: +30', 'highest device risk Medium: +15', '1 alert: +2', 'status Active: +10'],
      needsFullIncident: false,
      redirectedTo: null,
      hunting: {},
      notes: [],
    });
  });

  it('gives its version and portal link', () => {
    expect(graphIncidentVersion(graphDocsIncident)).toEqual({
      incidentId: 2972395,
      lastUpdateTime: '2021-09-30T09:35:45.1133333Z',
    });
    expect(graphPortalUrl(graphDocsIncident)).toBe(
      'https://security.microsoft.com/incidents/2972395?tid=12f988bf-16f1-11af-11ab-1d7cd011db47',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Versions and portal links

describe('graphIncidentVersion', () => {
  const at = '2021-09-30T09:35:45.1133333Z';

  it.each([
    ['2972395', at, 2972395, at],
    ['0', at, 0, at],
    ['123456789012345', at, 123456789012345, at], // 15 digits, the most the relay's ids take
    [2972395, at, 2972395, at], // a number, as Defender writes ids
    ['7', '2021-09-30T09:35:45Z', 7, '2021-09-30T09:35:45.0000000Z'],
    ['7', '2021-09-30T09:35:45.1+00:00', 7, '2021-09-30T09:35:45.1000000Z'],
  ])('id %o, lastUpdateDateTime %s → incident %d at %s', (id, time, incidentId, lastUpdateTime) => {
    expect(graphIncidentVersion({ id, lastUpdateDateTime: time })).toEqual({ incidentId, lastUpdateTime });
  });

  it.each([
    ['abc'],
    [''],
    [' '],
    ['1e3'],
    ['-1'],
    ['1.5'],
    ['0x10'],
    ['1234567890123456'], // 16 digits: more than the relay's ids take
    ['12345678901234567'],
    ['9'.repeat(40)],
    [-1],
    [1.5],
    [2 ** 60],
    [null],
    [undefined],
    [[1]],
    [{ id: 1 }],
  ])('refuses the id %o', (id) => {
    const version = graphIncidentVersion({ id, lastUpdateDateTime: at });
    expect(version).toEqual({
      problem: expect.stringMatching(
        id === undefined
          ? /^the Graph incident has no id/
          : /^the Graph incident's id .* is not a decimal integer of at most 15 digits/,
      ),
    });
  });

  it.each([
    [undefined],
    [null],
    [''],
    ['yesterday'],
    ['2021-09-30'],
    ['2021-02-30T00:00:00Z'],
    ['2021-09-30T25:00:00Z'],
    ['2021-09-30T09:35:45'],
    ['2021-09-30T09:35:45+02:00'],
    ['2021-09-30T09:35:45.12345678Z'],
    ['2021-09-30 09:35:45Z'],
    [1632994545000],
    [{}],
  ])('refuses lastUpdateDateTime %o', (time) => {
    expect(graphIncidentVersion({ id: '7', lastUpdateDateTime: time })).toEqual({
      problem: expect.stringMatching(
        time === undefined
          ? /^Graph incident 7 has no lastUpdateDateTime/
          : /^Graph incident 7: lastUpdateDateTime .* is not an ISO 8601 UTC timestamp/,
      ),
    });
  });

  it('names a missing field and a value that is not an incident', () => {
    expect(graphIncidentVersion({ lastUpdateDateTime: at })).toEqual({
      problem: 'the Graph incident has no id (the Defender incident id, a decimal integer of at most 15 digits)',
    });
    expect(graphIncidentVersion({ id: '7' })).toEqual({
      problem:
        'Graph incident 7 has no lastUpdateDateTime (an ISO 8601 UTC timestamp such as 2021-09-30T09:35:45.1133333Z)',
    });
    for (const value of [null, undefined, 'x', 7, [{ id: '7', lastUpdateDateTime: at }]])
      expect(graphIncidentVersion(value)).toEqual({
        problem: expect.stringMatching(/^the Graph incident is .*not an object$/),
      });
    // A huge value is named by its first characters only.
    const { problem } = graphIncidentVersion({ id: 'x'.repeat(100_000) }) as { problem: string };
    expect(problem.length).toBeLessThan(200);
  });
});

describe('graphPortalUrl', () => {
  const url = (incidentWebUrl: unknown) => graphPortalUrl({ incidentWebUrl });

  it.each([
    'https://security.microsoft.com/incidents/123?tid=12f988bf-16f1-11af-11ab-1d7cd011db47',
    'https://security.microsoft.com/incidents/2972395',
    'https://security.microsoft.com/alerts/da637551227677560813_-961444813?tid=b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c',
  ])('accepts %s as it is', (link) => {
    expect(url(link)).toBe(link);
  });

  it.each([
    ['http:', 'http://security.microsoft.com/incidents/123'],
    ['another host', 'https://evil.example/incidents/123?tid=security.microsoft.com'],
    ['a longer host', 'https://security.microsoft.com.evil.example/incidents/123'],
    ['a subdomain', 'https://x.security.microsoft.com/incidents/123'],
    ['userinfo', 'https://security.microsoft.com@evil.example/incidents/123'],
    ['userinfo before the host', 'https://user:pass@security.microsoft.com/incidents/123'],
    ['a port', 'https://security.microsoft.com:8443/incidents/123'],
    ['javascript:', 'javascript:alert(1)//https://security.microsoft.com/'],
    ['data:', 'data:text/html,https://security.microsoft.com/'],
    ['no slash after the host', 'https://security.microsoft.com'],
    ['a query right after the host', 'https://security.microsoft.com?x=1'],
    ['a scheme without slashes', 'https:security.microsoft.com/incidents/123'],
    ['a backslash', 'https://security.microsoft.com\\@evil.example/'],
    ['a leading space', ' https://security.microsoft.com/incidents/123'],
    ['a line break', 'https://security.microsoft.com/inc\nidents/123'],
    ['a tab', 'https://security.microsoft.com/incidents/\t123'],
    ['a NUL', 'https://security.microsoft.com/incidents/123\u0000'],
    ['a look-alike host (Cyrillic s)', 'https://\u0455ecurity.microsoft.com/incidents/123'],
    ['a percent-encoded dot', 'https://security%2Emicrosoft.com/incidents/123'],
    ['capitals', 'HTTPS://SECURITY.MICROSOFT.COM/incidents/123'],
    ['a URL longer than a Slack button takes', `https://security.microsoft.com/${'a'.repeat(3000)}`],
    ['an empty string', ''],
  ])('refuses %s', (_label, link) => {
    expect(url(link)).toBeUndefined();
  });

  it.each([
    [42],
    [null],
    [undefined],
    [{ href: 'https://security.microsoft.com/x' }],
    [['https://security.microsoft.com/x']],
  ])('refuses the non-string %o', (value) => {
    expect(url(value)).toBeUndefined();
  });

  it('refuses what is not an incident, and a link the incident only inherits', () => {
    for (const value of [null, undefined, 'https://security.microsoft.com/x', 7, []])
      expect(graphPortalUrl(value as unknown as Record<string, unknown>)).toBeUndefined();
    const inherited = Object.create({ incidentWebUrl: 'https://security.microsoft.com/incidents/1' }) as Record<
      string,
      unknown
    >;
    expect(graphPortalUrl(inherited)).toBeUndefined();
    for (const key of POLLUTING_KEYS) expect(url(key)).toBeUndefined();
  });
});
