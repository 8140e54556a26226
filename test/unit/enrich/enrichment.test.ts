import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generateIncidents } from '../../../local/defender/generator.js';
import { parseTimestamp } from '../../../local/defender/timestamps.js';
import {
  deriveEnrichment,
  ENTITY_CAP,
  fillHuntingQuery,
  huntingSpecProblems,
  kqlString,
  portalUrlFor,
  type EntitySummary,
} from '../../../shared/enrich/enrichment.js';

const TENANT = '8d2a6f0e-1c3b-4e5f-9a7b-2c4d6e8f0a1b';
const context = { tenantId: TENANT, tenantDisplayName: 'Fabrikam' };
const docs = JSON.parse(
  readFileSync(new URL('../../fixtures/incidents/docs-example.json', import.meta.url), 'utf8'),
) as {
  value: Record<string, unknown>[];
};
const docsIncident = (id: number) => docs.value.find((i) => i.incidentId === id)!;

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

const alert = (fields: Record<string, unknown>) => ({
  status: 'New',
  severity: 'Low',
  devices: [],
  entities: [],
  mitreTechniques: [],
  ...fields,
});

describe("deriveEnrichment on Microsoft's documented example incidents", () => {
  it('summarises the ransomware incident (cloud apps alert with a user and an IP)', () => {
    const enrichment = deriveEnrichment(deepFreeze(docsIncident(924565)), context);
    expect(enrichment).toEqual({
      tenantId: TENANT,
      tenantDisplayName: 'Fabrikam',
      incidentId: 924565,
      portalUrl: `https://security.microsoft.com/incidents/924565?tid=${TENANT}`,
      alertCount: 1,
      activeAlertCount: 1,
      severities: ['Medium'],
      highestSeverity: 'Medium',
      serviceSources: ['MicrosoftCloudAppSecurity'],
      detectionSources: ['MCAS'],
      mitre: { techniques: [], tactics: [{ id: 'TA0040', name: 'Impact' }] },
      categories: [],
      entities: {
        users: [
          {
            accountName: 'testUser2',
            domainName: 'europe.corp.contoso',
            userPrincipalName: 'testUser2@contoso.com',
            aadUserId: 'fc8f7484-f813-4db2-afab-bc1507913fb6',
          },
        ],
        devices: [],
        ips: ['62.216.203.204'],
        urls: [],
        fileHashes: [],
        mailboxes: [],
        truncated: false,
        totals: { users: 1, devices: 0, ips: 1, urls: 0, fileHashes: 0, mailboxes: 0 },
      },
      firstActivity: '2020-09-04T05:22:59.0000000Z',
      lastActivity: '2020-09-04T05:22:59.0000000Z',
      priority: 42,
      priorityReasons: ['severity Medium: +30', '1 alert: +2', 'status Active: +10'],
      needsFullIncident: false,
      redirectedTo: null,
      hunting: {},
      notes: [],
    });
  });

  it('summarises the Mimikatz incident: the high-risk device raises the priority, the file hash keeps its name', () => {
    const enrichment = deriveEnrichment(deepFreeze(docsIncident(924521)), context);
    expect(enrichment.entities.devices).toEqual([
      {
        mdatpDeviceId: '24c222b0b60fe148eeece49ac83910cc6a7ef491',
        deviceDnsName: 'user5cx.middleeast.corp.contoso.com',
        osPlatform: 'WindowsServer2016',
        riskScore: 'High',
        healthStatus: 'Active',
      },
    ]);
    expect(enrichment.entities.fileHashes).toEqual([
      { sha1: '5de839186691aa96ee2ca6d74f0a38fb8d1bd6dd', sha256: null, fileName: 'Detector.UnitTests.dll' },
    ]);
    expect(enrichment).toMatchObject({
      serviceSources: ['MicrosoftDefenderATP'],
      detectionSources: ['WindowsDefenderAv'],
      mitre: { techniques: [], tactics: [] },
      categories: ['Malware'],
      severities: ['Low'],
      firstActivity: '2020-09-06T12:15:07.7272048Z',
      priority: 15 + 25 + 2 + 10,
      priorityReasons: ['severity Low: +15', 'highest device risk High: +25', '1 alert: +2', 'status Active: +10'],
    });
  });

  it('summarises the reported-email incident: mailboxes (not users), an in-progress alert, the sender IP', () => {
    const enrichment = deriveEnrichment(deepFreeze(docsIncident(924518)), context);
    expect(enrichment.entities).toMatchObject({
      users: [],
      ips: ['49.50.81.121'],
      mailboxes: [
        { mailboxAddress: 'testUser3@contoso.com', mailboxDisplayName: 'test User3' },
        { mailboxAddress: 'test.User4@contoso.com', mailboxDisplayName: 'test User4' },
      ],
    });
    expect(enrichment).toMatchObject({
      activeAlertCount: 1,
      severities: ['Informational'],
      priority: 5 + 2 + 10,
      serviceSources: ['OfficeATP'],
      mitre: { tactics: [{ id: 'TA0001', name: 'Initial Access' }] },
      categories: [],
    });
  });
});

describe('deriveEnrichment on generated incidents', () => {
  const incidents = generateIncidents({
    tenantId: TENANT,
    count: 300,
    seed: 7,
    since: new Date('2026-10-01T00:00:00Z'),
    until: new Date('2026-10-31T00:00:00Z'),
    redirectedShare: 0.1,
  });
  const distinct = <T>(values: T[]) => [...new Set(values)];
  const ticks = (value: string) => parseTimestamp(value) as bigint;

  it('matches what the alerts say, for every incident, without changing it', () => {
    const before = structuredClone(incidents);
    for (const incident of incidents) {
      const e = deriveEnrichment(incident, context);
      const alerts = incident.alerts;
      expect(e.alertCount).toBe(alerts.length);
      expect(e.activeAlertCount).toBe(alerts.filter((a) => a.status !== 'Resolved').length);
      expect(e.portalUrl).toBe(incident.incidentUri);
      expect(e.severities).toContain(incident.severity);
      expect(e.highestSeverity).toBe(incident.severity); // the generator sets the incident's to its worst alert's
      expect(e.serviceSources).toEqual(distinct(alerts.map((a) => a.serviceSource)).sort());
      expect(e.mitre.techniques).toEqual(distinct(alerts.flatMap((a) => a.mitreTechniques)).sort());
      // Every category is either a tactic (its ATT&CK name without spaces, any case) or kept in categories, never both.
      const squash = (text: string) => text.replace(/ /g, '').toLowerCase();
      const fromTactics = e.mitre.tactics.map((t) => squash(t.name));
      expect([...fromTactics, ...e.categories.map(squash)].sort()).toEqual(
        distinct(alerts.map((a) => squash(a.category))).sort(),
      );
      expect(e.categories.some((c) => fromTactics.includes(squash(c)))).toBe(false);
      const deviceIds = distinct(alerts.flatMap((a) => a.devices.map((d) => d.mdatpDeviceId)));
      expect(e.entities.devices.map((d) => d.mdatpDeviceId)).toEqual(deviceIds);
      if (alerts.length > 0) {
        const first = alerts.map((a) => a.firstActivity).sort((x, y) => (ticks(x) < ticks(y) ? -1 : 1))[0];
        const last = alerts.map((a) => a.lastActivity).sort((x, y) => (ticks(x) > ticks(y) ? -1 : 1))[0];
        expect(e.firstActivity).toBe(first);
        expect(e.lastActivity).toBe(last);
      }
      expect(JSON.parse(JSON.stringify(e))).toEqual(e);
    }
    expect(incidents).toEqual(before);
  });

  it('marks merged incidents: no alerts, the full incident needed, the merge target named, priority 0', () => {
    const redirected = incidents.filter((i) => i.status === 'Redirected');
    expect(redirected.length).toBeGreaterThan(0);
    for (const incident of redirected) {
      const e = deriveEnrichment(incident, context);
      expect(e).toMatchObject({
        needsFullIncident: true,
        alertCount: 0,
        priority: 0,
        redirectedTo: {
          incidentId: incident.redirectIncidentId,
          portalUrl: portalUrlFor(incident.redirectIncidentId!, TENANT),
        },
      });
    }
    const full = incidents.filter((i) => i.alerts.length > 0).map((i) => deriveEnrichment(i, context));
    expect(full.every((e) => !e.needsFullIncident && e.redirectedTo === null)).toBe(true);
  });

  it('keeps scores within 0..100 and explains each one', () => {
    for (const incident of incidents) {
      const e = deriveEnrichment(incident, context);
      expect(e.priority).toBeGreaterThanOrEqual(0);
      expect(e.priority).toBeLessThanOrEqual(100);
      expect(e.priorityReasons.length).toBeGreaterThan(0);
    }
  });
});

describe('deriveEnrichment: dedupe and caps', () => {
  it('counts a user seen by different identifiers in several alerts once, filling in what each sighting knows', () => {
    const e = deriveEnrichment(
      {
        incidentId: 1,
        alerts: [
          alert({
            entities: [
              {
                entityType: 'User',
                userPrincipalName: 'Adele.Vance@contoso.com',
                accountName: null,
                domainName: null,
                aadUserId: null,
              },
            ],
          }),
          alert({
            entities: [
              {
                entityType: 'User',
                userPrincipalName: 'adele.vance@contoso.com',
                aadUserId: 'A1',
                accountName: 'adele.vance',
                domainName: 'CONTOSO',
              },
            ],
          }),
          alert({
            entities: [{ entityType: 'user', accountName: 'ADELE.VANCE', domainName: 'contoso', aadUserId: 'a1' }],
          }),
          alert({ entities: [{ entityType: 'User', accountName: 'lee.gu', domainName: 'CONTOSO' }] }),
        ],
      },
      context,
    );
    expect(e.entities.users).toEqual([
      {
        accountName: 'adele.vance',
        domainName: 'CONTOSO',
        userPrincipalName: 'Adele.Vance@contoso.com',
        aadUserId: 'A1',
      },
      { accountName: 'lee.gu', domainName: 'CONTOSO', userPrincipalName: null, aadUserId: null },
    ]);
  });

  it('counts a device once across alerts and keeps its highest risk; hashes, IPs, URLs and mailboxes once each', () => {
    const device = {
      mdatpDeviceId: 'ABC',
      deviceDnsName: 'pc1.contoso.com',
      osPlatform: 'Windows11',
      healthStatus: 'Active',
    };
    const file = { entityType: 'File', sha1: 'AA', sha256: 'BB', fileName: 'evil.exe' };
    const e = deriveEnrichment(
      {
        incidentId: 2,
        alerts: [
          alert({
            devices: [{ ...device, riskScore: 'Low' }],
            entities: [
              file,
              { entityType: 'Ip', ipAddress: '10.0.0.1' },
              { entityType: 'Url', url: 'https://x.example/a' },
            ],
          }),
          alert({
            devices: [{ ...device, mdatpDeviceId: 'abc', riskScore: 'High', osPlatform: null }],
            entities: [
              { ...file, sha1: 'aa', sha256: null, fileName: null },
              { entityType: 'Process', sha256: 'bb', fileName: 'evil.exe' },
              { entityType: 'Ip', ipAddress: '10.0.0.1' },
              { entityType: 'Url', url: 'https://x.example/a' },
              { entityType: 'MailBox', mailboxAddress: 'A@contoso.com', mailboxDisplayName: 'A' },
              { entityType: 'MailBox', mailboxAddress: 'a@contoso.com' },
            ],
          }),
        ],
      },
      context,
    );
    expect(e.entities.devices).toEqual([
      {
        mdatpDeviceId: 'ABC',
        deviceDnsName: 'pc1.contoso.com',
        osPlatform: 'Windows11',
        riskScore: 'High',
        healthStatus: 'Active',
      },
    ]);
    expect(e.entities.fileHashes).toEqual([{ sha1: 'AA', sha256: 'BB', fileName: 'evil.exe' }]);
    expect(e.entities).toMatchObject({
      ips: ['10.0.0.1'],
      urls: ['https://x.example/a'],
      mailboxes: [{ mailboxAddress: 'A@contoso.com', mailboxDisplayName: 'A' }],
      truncated: false,
    });
    expect(e.priorityReasons).toContain('highest device risk High: +25');
  });

  it(`keeps at most ${ENTITY_CAP} of each kind, flags it and counts the rest; the priority still sees every device`, () => {
    const devices = Array.from({ length: 70 }, (_, k) => ({
      mdatpDeviceId: `d${k}`,
      deviceDnsName: `pc${k}`,
      riskScore: k === 69 ? 'High' : 'None',
    }));
    const entities = Array.from({ length: 120 }, (_, k) => ({
      entityType: 'Ip',
      ipAddress: `10.0.${Math.floor(k / 250)}.${k}`,
    }));
    const e = deriveEnrichment(
      {
        incidentId: 3,
        severity: 'Low',
        alerts: [alert({ devices, entities }), alert({ entities: entities.slice(0, 10) })],
      },
      context,
    );
    expect(e.entities.devices).toHaveLength(ENTITY_CAP);
    expect(e.entities.devices[0]?.mdatpDeviceId).toBe('d0');
    expect(e.entities.ips).toHaveLength(ENTITY_CAP);
    expect(e.entities.truncated).toBe(true);
    expect(e.entities.totals).toMatchObject({ devices: 70, ips: 120 });
    expect(e.priorityReasons).toContain('highest device risk High: +25');
    expect(JSON.stringify(e).length).toBeLessThan(10_000);
  });
});

describe('deriveEnrichment: odd payloads never throw', () => {
  it.each([
    ['null', null],
    ['undefined', undefined],
    ['a string', 'incident'],
    ['a number', 42],
    ['an array', [{ incidentId: 1 }]],
    ['an empty object', {}],
    ['alerts as a string', { incidentId: 5, alerts: 'none' }],
    [
      'alerts holding junk',
      {
        incidentId: 5,
        alerts: [null, 1, 'a', [], { devices: 'x', entities: { entityType: 'User' }, mitreTechniques: 7 }],
      },
    ],
    [
      'wrong types everywhere',
      {
        incidentId: '12',
        severity: 7,
        status: {},
        redirectIncidentId: 'x',
        alerts: [
          {
            severity: ['High'],
            status: 3,
            category: {},
            serviceSource: 9,
            firstActivity: 'yesterday',
            lastActivity: 12,
            devices: [null, { riskScore: 5, mdatpDeviceId: {} }],
            entities: [null, { entityType: 5, ipAddress: 7, url: '', sha1: {} }],
          },
        ],
      },
    ],
  ])('%s', (_label, input) => {
    const e = deriveEnrichment(input, context);
    expect(e.tenantId).toBe(TENANT);
    expect(e.entities.truncated).toBe(false);
    expect(e.priority).toBeGreaterThanOrEqual(0);
    expect(() => JSON.stringify(e)).not.toThrow();
  });

  it('reads what it can from a thin or odd payload', () => {
    const e = deriveEnrichment(
      {
        incidentId: '12',
        severity: 'HIGH',
        status: 'active',
        alerts: [{ status: 'inProgress', mitreTechniques: 'T1003, t1059.001 bogus', severity: 'medium' }],
      },
      { tenantId: TENANT },
    );
    expect(e).toMatchObject({
      incidentId: 12,
      tenantDisplayName: null,
      activeAlertCount: 1,
      severities: ['Medium', 'High'],
      highestSeverity: 'High',
      mitre: { techniques: ['T1003', 'T1059.001'] },
      priority: 50 + 2 + 10,
    });
    expect(deriveEnrichment({ incidentId: 9 }, context)).toMatchObject({
      needsFullIncident: true,
      alertCount: 0,
      portalUrl: portalUrlFor(9, TENANT),
      firstActivity: null,
    });
  });

  it('falls back to the worst alert severity when the incident has none', () => {
    const e = deriveEnrichment(
      { incidentId: 1, alerts: [alert({ severity: 'High' }), alert({ severity: 'Low' })] },
      context,
    );
    expect(e.priorityReasons[0]).toBe('highest alert severity High: +50');
  });
});

describe('deriveEnrichment: alert categories and MITRE tactics', () => {
  const withCategories = (...categories: unknown[]) =>
    deriveEnrichment({ incidentId: 7, alerts: categories.map((category) => alert({ category })) }, context);
  const ids = (e: ReturnType<typeof deriveEnrichment>) => e.mitre.tactics.map((t) => t.id);

  it("gives the README's example: tactics as { id, name } in matrix order, the other categories apart", () => {
    const e = deriveEnrichment(
      {
        incidentId: 7,
        alerts: [
          alert({ category: 'CredentialAccess', mitreTechniques: ['T1003.001'] }),
          alert({ category: 'InitialAccess', mitreTechniques: ['T1566.002'] }),
          alert({ category: 'Malware' }),
          alert({ category: 'malware' }),
          alert({ category: 'None' }),
        ],
      },
      context,
    );
    expect({ mitre: e.mitre, categories: e.categories }).toEqual({
      mitre: {
        techniques: ['T1003.001', 'T1566.002'],
        tactics: [
          { id: 'TA0001', name: 'Initial Access' },
          { id: 'TA0006', name: 'Credential Access' },
        ],
      },
      categories: ['Malware'],
    });
  });

  // The values Defender for Endpoint's Create alert API documents for `category`, plus the three ATT&CK
  // tactics it does not list (Impact is in the List incidents example).
  it.each([
    ['Reconnaissance', { id: 'TA0043', name: 'Reconnaissance' }],
    ['ResourceDevelopment', { id: 'TA0042', name: 'Resource Development' }],
    ['InitialAccess', { id: 'TA0001', name: 'Initial Access' }],
    ['Execution', { id: 'TA0002', name: 'Execution' }],
    ['Persistence', { id: 'TA0003', name: 'Persistence' }],
    ['PrivilegeEscalation', { id: 'TA0004', name: 'Privilege Escalation' }],
    ['DefenseEvasion', { id: 'TA0005', name: 'Defense Evasion' }],
    ['CredentialAccess', { id: 'TA0006', name: 'Credential Access' }],
    ['Discovery', { id: 'TA0007', name: 'Discovery' }],
    ['LateralMovement', { id: 'TA0008', name: 'Lateral Movement' }],
    ['Collection', { id: 'TA0009', name: 'Collection' }],
    ['CommandAndControl', { id: 'TA0011', name: 'Command and Control' }],
    ['Exfiltration', { id: 'TA0010', name: 'Exfiltration' }],
    ['Impact', { id: 'TA0040', name: 'Impact' }],
  ])('the category %s is the ATT&CK tactic %o, and not a category', (category, tactic) => {
    expect(withCategories(category)).toMatchObject({ mitre: { tactics: [tactic] }, categories: [] });
  });

  it.each(['General', 'Exploit', 'Malware', 'Ransomware', 'SuspiciousActivity', 'UnwantedSoftware'])(
    'the category %s is not a tactic: it is kept in categories',
    (category) => {
      expect(withCategories(category)).toMatchObject({ mitre: { tactics: [] }, categories: [category] });
    },
  );

  it('lists tactics once each, in the order of the ATT&CK matrix (the last is the furthest stage), whatever the alert order', () => {
    const categories = [
      'Impact',
      'Exfiltration',
      'InitialAccess',
      'CommandAndControl',
      'Reconnaissance',
      'Impact',
      'InitialAccess',
    ];
    const expected = ['TA0043', 'TA0001', 'TA0011', 'TA0010', 'TA0040'];
    expect(ids(withCategories(...categories))).toEqual(expected);
    expect(ids(withCategories(...[...categories].reverse()))).toEqual(expected);
  });

  it('recognises a tactic in any case and spelling Defender or ATT&CK uses (spaces, dashes, underscores, the TA id)', () => {
    const e = withCategories(
      'initialaccess',
      ' INITIAL_ACCESS ',
      'Initial Access',
      'initial-access',
      'ta0001',
      'command-and-control',
      'Credential access',
    );
    expect(e.mitre.tactics).toEqual([
      { id: 'TA0001', name: 'Initial Access' },
      { id: 'TA0006', name: 'Credential Access' },
      { id: 'TA0011', name: 'Command and Control' },
    ]);
    expect(e.categories).toEqual([]);
  });

  it("follows ATT&CK's 2026 split of TA0005: Stealth is TA0005, Defense Impairment is TA0112, both tactics", () => {
    expect(withCategories('DefenseImpairment', 'Stealth', 'DefenseEvasion').mitre.tactics).toEqual([
      { id: 'TA0005', name: 'Defense Evasion' },
      { id: 'TA0112', name: 'Defense Impairment' },
    ]);
  });

  it('keeps the other categories sorted, once each whatever their case, in the documented spelling when there is one', () => {
    const e = withCategories(
      'malware',
      'SuspiciousActivity',
      'MALWARE',
      ' suspiciousactivity',
      'Malware',
      'unwantedsoftware',
      'ransomware',
      'InitialAccess',
    );
    expect(e.categories).toEqual(['Malware', 'Ransomware', 'SuspiciousActivity', 'UnwantedSoftware']);
    expect(ids(e)).toEqual(['TA0001']);
  });

  it('keeps an unknown category as Defender sent it (trimmed), with one spelling whatever the alert order', () => {
    // Lower-casing the Turkish dotted İ leaves a combining dot: it is not Initial Access.
    const unknown = [
      'ThreatManagement',
      'threatmanagement',
      'CredentialTheft',
      ' PreAttack ',
      'TA9999',
      'Initial',
      'InitialAccessAttempt',
      'İnitialAccess',
    ];
    const expected = [
      'CredentialTheft',
      'Initial',
      'InitialAccessAttempt',
      'PreAttack',
      'TA9999',
      'ThreatManagement',
      'İnitialAccess',
    ];
    expect(withCategories(...unknown)).toMatchObject({ mitre: { tactics: [] }, categories: expected });
    expect(withCategories(...[...unknown].reverse()).categories).toEqual(expected);
  });

  it('treats None, empty and missing categories as no category', () => {
    const e = deriveEnrichment(
      {
        incidentId: 7,
        alerts: [
          alert({ category: 'None' }),
          alert({ category: 'none' }),
          alert({ category: ' NONE ' }),
          alert({ category: '' }),
          alert({ category: '   ' }),
          alert({ category: null }),
          alert({}),
        ],
      },
      context,
    );
    expect(e).toMatchObject({ alertCount: 7, mitre: { tactics: [] }, categories: [] });
  });

  it('ignores categories that are not strings, and names that only exist on Object.prototype', () => {
    const e = withCategories(
      42,
      true,
      {},
      { name: 'Impact' },
      ['InitialAccess'],
      () => 'Impact',
      Symbol('x'),
      10n,
      '__proto__',
      'constructor',
      'toString',
      'hasOwnProperty',
    );
    expect(e.mitre.tactics).toEqual([]);
    expect(e.categories).toEqual(['__proto__', 'constructor', 'hasOwnProperty', 'toString']);
    expect(() => JSON.stringify(e)).not.toThrow();
  });

  it('gives each enrichment its own tactic objects: changing one message cannot change the next', () => {
    const first = withCategories('InitialAccess');
    first.mitre.tactics[0]!.name = 'changed';
    first.mitre.tactics.push({ id: 'TA0000', name: 'bogus' });
    expect(withCategories('InitialAccess').mitre.tactics).toEqual([{ id: 'TA0001', name: 'Initial Access' }]);
  });
});

describe('deriveEnrichment: timestamps and the portal link', () => {
  it('compares 7-digit timestamps exactly, whatever their precision (where plain string order would be wrong)', () => {
    const e = deriveEnrichment(
      {
        incidentId: 1,
        alerts: [
          alert({ firstActivity: '2020-09-06T14:46:58.0000001Z', lastActivity: '2020-09-06T14:46:59Z' }),
          alert({ firstActivity: '2020-09-06T14:46:58Z', lastActivity: '2020-09-06T14:46:59.0000001Z' }),
          alert({ firstActivity: '2020-09-06T14:46:58.5Z', lastActivity: '2020-09-06T14:46:58.9999999Z' }),
          alert({ firstActivity: 'not a time', lastActivity: null }),
        ],
      },
      context,
    );
    expect(e.firstActivity).toBe('2020-09-06T14:46:58.0000000Z');
    expect(e.lastActivity).toBe('2020-09-06T14:46:59.0000001Z');
  });

  it('links the incident in the Defender portal for its tenant', () => {
    expect(portalUrlFor(924565, TENANT)).toBe(`https://security.microsoft.com/incidents/924565?tid=${TENANT}`);
    expect(deriveEnrichment({ alerts: [alert({})] }, context).portalUrl).toBeNull();
  });
});

describe('hunting query placeholders', () => {
  const entities: EntitySummary = {
    users: [
      { accountName: 'adele', domainName: 'C', userPrincipalName: null, aadUserId: null },
      { accountName: 'o"brien\\x', domainName: 'C', userPrincipalName: null, aadUserId: null },
    ],
    devices: [
      { mdatpDeviceId: 'd1', deviceDnsName: 'pc1.contoso.com', osPlatform: null, riskScore: null, healthStatus: null },
    ],
    ips: [],
    urls: [],
    fileHashes: [],
    mailboxes: [],
    truncated: false,
    totals: { users: 2, devices: 1, ips: 0, urls: 0, fileHashes: 0, mailboxes: 0 },
  };

  it('fills each placeholder with a quoted, escaped KQL list', () => {
    expect(
      fillHuntingQuery(
        'DeviceLogonEvents | where DeviceName in ({deviceNames}) and AccountName in ({accountNames})',
        entities,
      ),
    ).toEqual({
      query:
        'DeviceLogonEvents | where DeviceName in ("pc1.contoso.com") and AccountName in ("adele","o\\"brien\\\\x")',
    });
  });

  it('skips a query whose placeholder has no values, or names none it knows', () => {
    expect(fillHuntingQuery('X | where RemoteIP in ({ips})', entities)).toEqual({
      skipped: expect.stringContaining('no values for {ips}'),
    });
    expect(fillHuntingQuery('X | where A in ({constructor})', entities)).toEqual({
      skipped: expect.stringContaining('unknown placeholder {constructor}'),
    });
  });

  it('escapes what could end a KQL string early', () => {
    expect(kqlString('a"b\\c\nd\u0001')).toBe('"a\\"b\\\\c\\nd"');
  });

  it('names what is wrong with a query spec', () => {
    expect(
      huntingSpecProblems({
        name: 'recent-logons',
        query: 'DeviceLogonEvents | where DeviceName in ({deviceNames})',
        maxRows: 20,
      }),
    ).toEqual([]);
    expect(huntingSpecProblems({ name: '', query: 'X {nope}', maxRows: 0 })).toEqual([
      expect.stringMatching(/^name: /),
      expect.stringMatching(/^query: unknown placeholder \{nope\}/),
      expect.stringMatching(/^maxRows: /),
    ]);
    expect(huntingSpecProblems('x')).toEqual(['must be an object with name and query']);
  });
});
