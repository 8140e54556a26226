import { SeededRandom } from './random.js';
import { formatTimestamp, ticksFromMs } from './timestamps.js';
import {
  ENTITY_FIELDS,
  type Alert,
  type Classification,
  type Determination,
  type Device,
  type Entity,
  type EntityType,
  type Incident,
  type IncidentStatus,
  type RiskScore,
  type ServiceSource,
  type Severity,
} from './types.js';

export type { Alert, Device, Entity, Incident } from './types.js';

/**
 * Realistic, seeded Defender incidents. The same tenant, seed and window always give the same
 * incidents; the tenant id is part of the seed so several tenants get different data. The default
 * window is the 30 days before now, so pass `since`/`until` for byte-identical output across runs.
 */
export interface GenerateOptions {
  tenantId: string;
  count: number;
  seed: number | string;
  /** First incident id; later ids grow with small gaps, as real ids do. */
  startId?: number;
  since?: Date;
  until?: Date;
  /** Share of incidents merged into another (status Redirected, no alerts). Default 0.05. */
  redirectedShare?: number;
}

const DAY_MS = 86_400_000;
const MINUTE_TICKS = 600_000_000n;

type Tactic = { category: string; label: string };
const TACTICS = {
  InitialAccess: { category: 'InitialAccess', label: 'Initial access' },
  Execution: { category: 'Execution', label: 'Execution' },
  Persistence: { category: 'Persistence', label: 'Persistence' },
  DefenseEvasion: { category: 'DefenseEvasion', label: 'Defense evasion' },
  CredentialAccess: { category: 'CredentialAccess', label: 'Credential access' },
  Discovery: { category: 'Discovery', label: 'Discovery' },
  LateralMovement: { category: 'LateralMovement', label: 'Lateral movement' },
  Exfiltration: { category: 'Exfiltration', label: 'Exfiltration' },
  CommandAndControl: { category: 'CommandAndControl', label: 'Command and control' },
  Impact: { category: 'Impact', label: 'Impact' },
  Malware: { category: 'Malware', label: 'Malware' },
} satisfies Record<string, Tactic>;

interface AlertTemplate {
  serviceSource: ServiceSource;
  detectionSource: string;
  title: string;
  description: string;
  tactic: Tactic;
  techniques: string[];
  entityTypes: EntityType[];
  onDevice: boolean;
  threatFamilyName?: string;
}

const ALERT_TEMPLATES: AlertTemplate[] = [
  {
    serviceSource: 'MicrosoftDefenderForEndpoint',
    detectionSource: 'WindowsDefenderAtp',
    title: 'Suspicious PowerShell command line',
    description: 'A suspicious PowerShell activity was observed on the machine.',
    tactic: TACTICS.Execution,
    techniques: ['T1059.001'],
    entityTypes: ['Process', 'File', 'User'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForEndpoint',
    detectionSource: 'WindowsDefenderAtp',
    title: 'Suspicious access to LSASS service',
    description: 'A process accessed the memory of the LSASS service, which may indicate credential theft.',
    tactic: TACTICS.CredentialAccess,
    techniques: ['T1003', 'T1003.001'],
    entityTypes: ['Process', 'User'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForEndpoint',
    detectionSource: 'WindowsDefenderAv',
    title: "'Mimikatz' credential theft tool",
    description: 'The Mimikatz credential theft tool was detected on the machine.',
    tactic: TACTICS.CredentialAccess,
    techniques: ['T1003'],
    entityTypes: ['File', 'Process'],
    onDevice: true,
    threatFamilyName: 'Mimikatz',
  },
  {
    serviceSource: 'MicrosoftDefenderForEndpoint',
    detectionSource: 'WindowsDefenderAtp',
    title: 'Ransomware behavior detected in the file system',
    description: 'Files were renamed and encrypted in a pattern typical of ransomware.',
    tactic: TACTICS.Impact,
    techniques: ['T1486'],
    entityTypes: ['Process', 'File'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForEndpoint',
    detectionSource: 'WindowsDefenderAtp',
    title: 'Suspicious remote activity',
    description: 'A remote session ran commands on the machine over SMB.',
    tactic: TACTICS.LateralMovement,
    techniques: ['T1021.002', 'T1570'],
    entityTypes: ['Ip', 'User', 'Process'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForEndpoint',
    detectionSource: 'WindowsDefenderAv',
    title: "An active 'Trickbot' malware was detected",
    description: 'Trickbot malware was detected and was active on the machine.',
    tactic: TACTICS.Malware,
    techniques: ['T1204.002'],
    entityTypes: ['File'],
    onDevice: true,
    threatFamilyName: 'Trickbot',
  },
  {
    serviceSource: 'MicrosoftDefenderForEndpoint',
    detectionSource: 'WindowsDefenderAtp',
    title: 'Suspicious registry modification',
    description: 'A Run key was added to make a program start at logon.',
    tactic: TACTICS.Persistence,
    techniques: ['T1547.001', 'T1112'],
    entityTypes: ['Registry', 'Process'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForEndpoint',
    detectionSource: 'WindowsDefenderAtp',
    title: 'Connection to a custom network indicator',
    description: 'The machine connected to a URL on the organization block list.',
    tactic: TACTICS.CommandAndControl,
    techniques: ['T1071.001'],
    entityTypes: ['Url', 'Ip'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForOffice',
    detectionSource: 'OfficeATP',
    title: 'Email messages containing malicious URL removed after delivery',
    description: 'Emails with a malicious URL were delivered and later removed by zero-hour auto purge.',
    tactic: TACTICS.InitialAccess,
    techniques: ['T1566.002'],
    entityTypes: ['MailMessage', 'MailBox', 'Url'],
    onDevice: false,
  },
  {
    serviceSource: 'MicrosoftDefenderForOffice',
    detectionSource: 'OfficeATP',
    title: 'Email reported by user as malware or phish',
    description: 'A user reported an email as malware or phishing.',
    tactic: TACTICS.InitialAccess,
    techniques: ['T1566'],
    entityTypes: ['MailMessage', 'MailBox'],
    onDevice: false,
  },
  {
    serviceSource: 'MicrosoftDefenderForOffice',
    detectionSource: 'OfficeATP',
    title: 'A potentially malicious URL click was detected',
    description: 'A user clicked a link that was later found to be malicious.',
    tactic: TACTICS.InitialAccess,
    techniques: ['T1566.002'],
    entityTypes: ['Url', 'MailBox', 'MailCluster'],
    onDevice: false,
  },
  {
    serviceSource: 'MicrosoftCloudAppSecurity',
    detectionSource: 'MCAS',
    title: 'Impossible travel activity',
    description: 'The same user signed in from two distant locations within a short time.',
    tactic: TACTICS.InitialAccess,
    techniques: ['T1078'],
    entityTypes: ['User', 'Ip', 'CloudApplication'],
    onDevice: false,
  },
  {
    serviceSource: 'MicrosoftCloudAppSecurity',
    detectionSource: 'MCAS',
    title: 'Mass download by a single user',
    description: 'A user downloaded an unusual number of files in one session.',
    tactic: TACTICS.Exfiltration,
    techniques: ['T1530'],
    entityTypes: ['User', 'CloudApplication', 'Ip'],
    onDevice: false,
  },
  {
    serviceSource: 'MicrosoftCloudAppSecurity',
    detectionSource: 'MCAS',
    title: 'Suspicious inbox forwarding',
    description: 'A forwarding rule sends mail to an external address.',
    tactic: TACTICS.Exfiltration,
    techniques: ['T1114.003'],
    entityTypes: ['User', 'MailBox'],
    onDevice: false,
  },
  {
    serviceSource: 'AzureAdIdentityProtection',
    detectionSource: 'AadIdentityProtection',
    title: 'Anonymous IP address',
    description: 'A sign-in came from an anonymous IP address such as a Tor exit node.',
    tactic: TACTICS.InitialAccess,
    techniques: ['T1078'],
    entityTypes: ['User', 'Ip'],
    onDevice: false,
  },
  {
    serviceSource: 'AzureAdIdentityProtection',
    detectionSource: 'AadIdentityProtection',
    title: 'Unfamiliar sign-in properties',
    description: 'A sign-in had properties not seen recently for this user.',
    tactic: TACTICS.InitialAccess,
    techniques: ['T1078'],
    entityTypes: ['User', 'Ip'],
    onDevice: false,
  },
  {
    serviceSource: 'MicrosoftDefenderForIdentity',
    detectionSource: 'AzureAtp',
    title: 'Suspected DCSync attack (replication of directory services)',
    description: 'A machine asked a domain controller to replicate directory secrets.',
    tactic: TACTICS.CredentialAccess,
    techniques: ['T1003.006'],
    entityTypes: ['User', 'Ip', 'SecurityGroup'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForIdentity',
    detectionSource: 'AzureAtp',
    title: 'Suspected Brute Force attack (Kerberos, NTLM)',
    description: 'Many failed authentications against several accounts came from one machine.',
    tactic: TACTICS.CredentialAccess,
    techniques: ['T1110', 'T1110.003'],
    entityTypes: ['User', 'Ip'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForIdentity',
    detectionSource: 'AzureAtp',
    title: 'User and IP address reconnaissance (SMB)',
    description: 'SMB session enumeration was run against a domain controller.',
    tactic: TACTICS.Discovery,
    techniques: ['T1087', 'T1049'],
    entityTypes: ['User', 'Ip'],
    onDevice: true,
  },
  {
    serviceSource: 'MicrosoftDefenderForIdentity',
    detectionSource: 'AzureAtp',
    title: 'Suspected overpass-the-hash attack (Kerberos)',
    description: 'An account used a stolen NTLM hash to obtain Kerberos tickets.',
    tactic: TACTICS.LateralMovement,
    techniques: ['T1550.002'],
    entityTypes: ['User', 'Ip'],
    onDevice: true,
  },
];

const ALERT_ID_PREFIX: Record<ServiceSource, string> = {
  MicrosoftDefenderForEndpoint: 'da',
  MicrosoftDefenderForOffice: 'fa',
  MicrosoftCloudAppSecurity: 'ca',
  AzureAdIdentityProtection: 'ad',
  MicrosoftDefenderForIdentity: 'aa',
};

const SEVERITY_RANK: Record<Severity, number> = { UnSpecified: 0, Informational: 1, Low: 2, Medium: 3, High: 4 };
const DOMAINS = [
  'contoso.com',
  'fabrikam.com',
  'northwindtraders.com',
  'adatum.com',
  'tailspintoys.com',
  'wingtiptoys.com',
  'litware.com',
  'woodgrovebank.com',
];
const FIRST_NAMES = [
  'adele',
  'alex',
  'diego',
  'grady',
  'isaiah',
  'johanna',
  'joni',
  'lee',
  'lidia',
  'lynne',
  'megan',
  'miriam',
  'nestor',
  'patti',
  'pradeep',
];
const LAST_NAMES = [
  'vance',
  'wilber',
  'siciliani',
  'archie',
  'langer',
  'lorenz',
  'sherman',
  'gu',
  'holloway',
  'robinson',
  'bowen',
  'graham',
  'wilke',
  'fernandez',
  'gupta',
];
const ANALYSTS = ['secops@', 'tier1.analyst@', 'tier2.analyst@', 'soc.lead@'];
const INCIDENT_TAGS = ['Ransomware', 'Phishing', 'VIP', 'Finance', 'Pentest', 'Automation', 'Escalated', 'Cloud'];
const COMMENTS = [
  'Investigating, contacted the device owner.',
  'Isolated the device pending analysis.',
  'Password reset and sessions revoked.',
  'Confirmed with the user: expected activity.',
  'Closed after review.',
];
const TP_DETERMINATIONS: Determination[] = [
  'MultiStagedAttack',
  'Malware',
  'Phishing',
  'MaliciousUserActivity',
  'UnwantedSoftware',
  'CompromisedAccount',
  'Other',
];
const PROCESSES = [
  {
    fileName: 'powershell.exe',
    filePath: 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0',
    commandLine: 'powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0A',
  },
  {
    fileName: 'rundll32.exe',
    filePath: 'C:\\Windows\\System32',
    commandLine: 'rundll32.exe C:\\Users\\Public\\update.dll,Start',
  },
  {
    fileName: 'mimikatz.exe',
    filePath: 'C:\\Users\\Public\\Downloads',
    commandLine: 'mimikatz.exe "privilege::debug" "sekurlsa::logonpasswords" exit',
  },
  { fileName: 'cmd.exe', filePath: 'C:\\Windows\\System32', commandLine: 'cmd.exe /c whoami /all' },
];

interface Person {
  accountName: string;
  upn: string;
  displayName: string;
  sid: string;
  aadUserId: string;
}

/** The tenant's own world (people, devices, domain) that its incidents draw from. */
interface TenantWorld {
  domain: string;
  netbios: string;
  people: Person[];
  devices: Device[];
  analysts: string[];
}

export function generateIncidents(options: GenerateOptions): Incident[] {
  const count = Math.max(0, Math.floor(options.count));
  const rng = new SeededRandom(`${options.tenantId}|${String(options.seed)}`);
  const untilMs = (options.until ?? new Date()).getTime();
  const sinceMs = (options.since ?? new Date(untilMs - 30 * DAY_MS)).getTime();
  if (!(sinceMs < untilMs)) throw new RangeError('generateIncidents: `since` must be before `until`.');
  const since = ticksFromMs(sinceMs);
  const until = ticksFromMs(untilMs);
  const redirectedShare = options.redirectedShare ?? 0.05;
  const world = buildWorld(rng, options.tenantId, count, since);

  const incidents: Incident[] = [];
  let nextId = options.startId ?? rng.int(1_000, 90_000);
  for (let i = 0; i < count; i += 1) {
    const incidentId = nextId;
    nextId += rng.int(1, 3);
    const targets = incidents.filter((incident) => incident.status !== 'Redirected');
    if (targets.length > 0 && rng.chance(redirectedShare)) {
      incidents.push(redirectedIncident(rng, options.tenantId, incidentId, rng.pick(targets), since, until));
    } else {
      incidents.push(activeIncident(rng, options.tenantId, incidentId, world, since, until));
    }
  }
  return incidents;
}

function buildWorld(rng: SeededRandom, tenantId: string, count: number, since: bigint): TenantWorld {
  // The domain depends on the tenant only, so reseeding a tenant keeps its identity.
  const domain = new SeededRandom(tenantId).pick(DOMAINS);
  const netbios = (domain.split('.')[0] as string).toUpperCase().slice(0, 15);
  const domainSid = `S-1-5-21-${rng.int(1e8, 4e9)}-${rng.int(1e8, 4e9)}-${rng.int(1e8, 4e9)}`;
  const people = rng
    .sample(
      FIRST_NAMES.flatMap((first) => LAST_NAMES.map((last) => [first, last] as const)),
      Math.min(40, 5 + Math.ceil(count / 10)),
    )
    .map(([first, last]) => ({
      accountName: `${first}.${last}`,
      upn: `${first}.${last}@${domain}`,
      displayName: `${capitalize(first)} ${capitalize(last)}`,
      sid: `${domainSid}-${rng.int(1100, 9999)}`,
      aadUserId: rng.guid(),
    }));
  const deviceCount = Math.min(60, 4 + Math.ceil(count / 8));
  const devices = Array.from({ length: deviceCount }, () => buildDevice(rng, domain, since));
  return { domain, netbios, people, devices, analysts: ANALYSTS.map((prefix) => `${prefix}${domain}`) };
}

function buildDevice(rng: SeededRandom, domain: string, since: bigint): Device {
  const server = rng.chance(0.25);
  const linux = !server && rng.chance(0.08);
  const osPlatform = server
    ? rng.pick(['WindowsServer2019', 'WindowsServer2022'])
    : linux
      ? 'Linux'
      : rng.pick(['Windows10', 'Windows11']);
  const name = server
    ? `srv-${rng.pick(['dc', 'app', 'sql', 'file'])}${rng.int(1, 20)}`
    : `${linux ? 'ubuntu' : 'desktop'}-${rng.hex(7)}`;
  const riskScore: RiskScore = rng.weighted<RiskScore>([
    ['None', 3],
    ['Informational', 2],
    ['Low', 3],
    ['Medium', 3],
    ['High', 1],
  ]);
  const azureVm = server && rng.chance(0.6);
  const subscriptionId = rng.guid();
  return {
    mdatpDeviceId: rng.hex(40),
    aadDeviceId: linux ? null : rng.guid(),
    deviceDnsName: `${name}.${domain}`,
    osPlatform,
    version: linux
      ? '22.04'
      : server
        ? osPlatform === 'WindowsServer2019'
          ? '1809'
          : '21H2'
        : rng.pick(['21H2', '22H2', '23H2']),
    osProcessor: 'x64',
    osBuild: linux ? 0 : rng.pick([17763, 19045, 20348, 22621, 22631]),
    healthStatus: rng.weighted([
      ['Active', 8],
      ['Inactive', 1],
      ['ImpairedCommunication', 1],
      ['NoSensorData', 1],
    ]),
    riskScore,
    rbacGroupName: server ? 'Servers' : rng.pick(['Workstations', 'UnassignedGroup']),
    rbacGroupId: server ? 2 : rng.pick([1, 0]),
    firstSeen: formatTimestamp(
      since - BigInt(rng.int(1, 400)) * 1440n * MINUTE_TICKS + BigInt(rng.int(0, 599_999_999)),
    ),
    tags: rng.chance(0.3) ? [rng.pick(['Tier0', 'Finance', 'Kiosk', 'Lab'])] : [],
    defenderAvStatus: rng.weighted([
      ['Updated', 8],
      ['NotUpdated', 1],
      ['Disabled', 1],
    ]),
    onboardingStatus: 'Onboarded',
    vmMetadata: azureVm
      ? {
          vmId: rng.guid(),
          cloudProvider: 'Azure',
          resourceId: `/subscriptions/${subscriptionId}/resourceGroups/rg-servers/providers/Microsoft.Compute/virtualMachines/${name}`,
          subscriptionId,
        }
      : null,
  };
}

function activeIncident(
  rng: SeededRandom,
  tenantId: string,
  incidentId: number,
  world: TenantWorld,
  since: bigint,
  until: bigint,
): Incident {
  const created = between(rng, since, until);
  const lastUpdate = between(rng, created, minTicks(until, created + 7n * 1440n * MINUTE_TICKS));
  const status = rng.weighted<IncidentStatus>([
    ['Active', 6],
    ['InProgress', 2],
    ['Resolved', 3],
  ]);
  const person = rng.pick(world.people);
  const alertCount = rng.weighted([
    [1, 5],
    [2, 3],
    [3, 2],
    [4, 1],
    [5, 1],
    [6, 1],
  ]);
  const alerts = Array.from({ length: alertCount }, (_, index) =>
    buildAlert(
      rng,
      incidentId,
      world,
      person,
      status,
      index === 0 ? created : between(rng, created, lastUpdate),
      lastUpdate,
    ),
  );
  const severity = alerts.reduce<Severity>(
    (worst, alert) => (SEVERITY_RANK[alert.severity] > SEVERITY_RANK[worst] ? alert.severity : worst),
    'Informational',
  );
  const { classification, determination } = verdict(rng, status);
  const assignedTo = status === 'Active' && rng.chance(0.5) ? null : rng.pick(world.analysts);
  return {
    incidentId,
    incidentUri: incidentUri(tenantId, incidentId),
    redirectIncidentId: null,
    incidentName: incidentName(alerts),
    createdTime: formatTimestamp(created),
    lastUpdateTime: formatTimestamp(lastUpdate),
    assignedTo,
    classification,
    determination,
    status,
    severity,
    tags: rng.chance(0.35) ? rng.sample(INCIDENT_TAGS, rng.int(1, 2)) : [],
    comments:
      status !== 'Active' && assignedTo && rng.chance(0.6)
        ? [
            {
              comment: rng.pick(COMMENTS),
              createdBy: assignedTo,
              createdTime: formatTimestamp(between(rng, created, lastUpdate)),
            },
          ]
        : [],
    alerts,
  };
}

function redirectedIncident(
  rng: SeededRandom,
  tenantId: string,
  incidentId: number,
  target: Incident,
  since: bigint,
  until: bigint,
): Incident {
  const created = between(rng, since, until);
  return {
    incidentId,
    incidentUri: incidentUri(tenantId, incidentId),
    redirectIncidentId: target.incidentId,
    incidentName: target.incidentName,
    createdTime: formatTimestamp(created),
    lastUpdateTime: formatTimestamp(between(rng, created, until)),
    assignedTo: null,
    classification: 'Unknown',
    determination: 'NotAvailable',
    status: 'Redirected',
    severity: target.severity,
    tags: [],
    comments: [],
    // Merged incidents come without alerts: their alerts now live in the target incident.
    alerts: [],
  };
}

function verdict(
  rng: SeededRandom,
  status: IncidentStatus,
): { classification: Classification; determination: Determination } {
  if (status !== 'Resolved') return { classification: 'Unknown', determination: 'NotAvailable' };
  const classification = rng.weighted<Classification>([
    ['TruePositive', 4],
    ['FalsePositive', 3],
    ['InformationalExpectedActivity', 2],
    ['Unknown', 1],
  ]);
  // Determinations other than NotAvailable only go with TruePositive (the PATCH rule).
  return {
    classification,
    determination: classification === 'TruePositive' ? rng.pick(TP_DETERMINATIONS) : 'NotAvailable',
  };
}

function buildAlert(
  rng: SeededRandom,
  incidentId: number,
  world: TenantWorld,
  person: Person,
  incidentStatus: IncidentStatus,
  created: bigint,
  incidentLastUpdate: bigint,
): Alert {
  const template = rng.pick(ALERT_TEMPLATES);
  const severity = rng.weighted<Severity>([
    ['High', 1],
    ['Medium', 4],
    ['Low', 4],
    ['Informational', 2],
  ]);
  const lastUpdated = between(rng, created, maxTicks(created, incidentLastUpdate));
  const firstActivity = created - BigInt(rng.int(1, 120)) * MINUTE_TICKS - BigInt(rng.int(0, 599_999_999));
  const lastActivity = between(rng, firstActivity, created);
  const status =
    incidentStatus === 'Resolved'
      ? 'Resolved'
      : incidentStatus === 'InProgress'
        ? rng.pick(['New', 'InProgress'] as const)
        : 'New';
  const devices = template.onDevice
    ? rng.sample(
        world.devices,
        rng.weighted([
          [1, 4],
          [2, 1],
        ]),
      )
    : [];
  const isEndpoint = template.serviceSource === 'MicrosoftDefenderForEndpoint';
  const providerAlertId = isEndpoint
    ? `${rng.int(637000000, 639999999)}${rng.int(100000000, 999999999)}_${rng.int(-2147483647, 2147483647)}`
    : rng.guid();
  return {
    alertId: `${ALERT_ID_PREFIX[template.serviceSource]}${providerAlertId}`,
    providerAlertId,
    incidentId,
    serviceSource: template.serviceSource,
    creationTime: formatTimestamp(created),
    lastUpdatedTime: formatTimestamp(lastUpdated),
    resolvedTime: status === 'Resolved' ? formatTimestamp(lastUpdated) : null,
    firstActivity: formatTimestamp(firstActivity),
    lastActivity: formatTimestamp(lastActivity),
    title: template.title,
    description: template.description,
    category: template.tactic.category,
    status,
    severity,
    investigationId: isEndpoint && rng.chance(0.6) ? rng.int(1, 99_999) : null,
    investigationState: isEndpoint
      ? rng.pick(['Running', 'PendingApproval', 'SuccessfullyRemediated', 'Benign', 'TerminatedBySystem'])
      : 'UnsupportedAlertType',
    classification: null,
    determination: null,
    detectionSource: template.detectionSource,
    detectorId: rng.guid(),
    assignedTo: null,
    actorName: rng.chance(0.05) ? rng.pick(['Storm-0501', 'Mint Sandstorm', 'Octo Tempest']) : null,
    threatFamilyName: template.threatFamilyName ?? null,
    mitreTechniques: [...template.techniques],
    devices,
    entities: template.entityTypes.map((type) => buildEntity(rng, type, world, person, devices[0], created)),
  };
}

/** An entity with every field present: the type-specific ones are set, the rest null. */
function buildEntity(
  rng: SeededRandom,
  entityType: EntityType,
  world: TenantWorld,
  person: Person,
  device: Device | undefined,
  created: bigint,
): Entity {
  const entity = {
    entityType,
    evidenceCreationTime: formatTimestamp(created),
    verdict: rng.weighted([
      ['Suspicious', 4],
      ['Malicious', 3],
      ['Unknown', 2],
      ['Clean', 1],
    ]),
    remediationStatus: rng.weighted([
      ['None', 5],
      ['Remediated', 2],
      ['Prevented', 1],
      ['Blocked', 1],
    ]),
    ...(Object.fromEntries(ENTITY_FIELDS.map((field) => [field, null])) as Record<
      (typeof ENTITY_FIELDS)[number],
      null
    >),
  } as Entity;
  const deviceId = device?.mdatpDeviceId ?? null;
  switch (entityType) {
    case 'User':
      return {
        ...entity,
        accountName: person.accountName,
        domainName: world.netbios,
        userSid: person.sid,
        aadUserId: person.aadUserId,
        userPrincipalName: person.upn,
      };
    case 'Ip':
      return {
        ...entity,
        ipAddress: rng.chance(0.5)
          ? `10.${rng.int(0, 255)}.${rng.int(0, 255)}.${rng.int(1, 254)}`
          : `${rng.int(20, 200)}.${rng.int(0, 255)}.${rng.int(0, 255)}.${rng.int(1, 254)}`,
      };
    case 'Url':
      return {
        ...entity,
        url: `https://${rng.pick(['login-micros0ft', 'sharepoint-docs', 'invoice-portal'])}.${rng.pick(['xyz', 'top', 'info'])}/${rng.hex(8)}`,
      };
    case 'File': {
      const process = rng.pick(PROCESSES);
      return {
        ...entity,
        sha1: rng.hex(40),
        sha256: rng.hex(64),
        fileName: process.fileName,
        filePath: process.filePath,
        deviceId,
      };
    }
    case 'Process': {
      const process = rng.pick(PROCESSES);
      const started = created - BigInt(rng.int(1, 30)) * MINUTE_TICKS;
      return {
        ...entity,
        sha1: rng.hex(40),
        sha256: rng.hex(64),
        fileName: process.fileName,
        filePath: process.filePath,
        processId: rng.int(1000, 30000),
        processCommandLine: process.commandLine,
        processCreationTime: formatTimestamp(started),
        parentProcessId: rng.int(100, 9999),
        parentProcessCreationTime: formatTimestamp(started - BigInt(rng.int(1, 600)) * MINUTE_TICKS),
        accountName: person.accountName,
        domainName: world.netbios,
        userSid: person.sid,
        deviceId,
      };
    }
    case 'MailBox':
      return {
        ...entity,
        mailboxDisplayName: person.displayName,
        mailboxAddress: person.upn,
        userPrincipalName: person.upn,
        aadUserId: person.aadUserId,
      };
    case 'MailMessage':
      return {
        ...entity,
        sender: `${rng.pick(['billing', 'it-support', 'hr'])}@${rng.pick(['invoices-online.xyz', 'mail-secure.top', 'payroll-update.info'])}`,
        recipient: person.upn,
        subject: rng.pick(['Your invoice is overdue', 'Action required: password expiry', 'Updated payroll details']),
        deliveryAction: rng.pick(['Delivered', 'Blocked', 'Junked']),
      };
    case 'MailCluster':
      return { ...entity, clusterBy: rng.pick(['Subject;SenderDomain', 'FileHash', 'Url']) };
    case 'Registry':
      return {
        ...entity,
        registryHive: 'HKEY_CURRENT_USER',
        registryKey: 'SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run',
        registryValueType: 'String',
        registryValue: `C:\\Users\\Public\\${rng.hex(6)}.exe`,
        deviceId,
      };
    case 'SecurityGroup':
      return {
        ...entity,
        securityGroupId: rng.guid(),
        securityGroupName: rng.pick(['Domain Admins', 'Enterprise Admins', 'Backup Operators']),
      };
    case 'CloudApplication':
      return entity;
  }
}

function incidentName(alerts: Alert[]): string {
  const tactics = [...new Set(alerts.map((alert) => TACTIC_LABELS[alert.category] ?? alert.category))];
  const deviceCount = new Set(alerts.flatMap((alert) => alert.devices.map((device) => device.mdatpDeviceId))).size;
  const where =
    deviceCount > 1 ? 'on multiple endpoints' : deviceCount === 1 ? 'on one endpoint' : 'involving one user';
  if (tactics.length > 1) return `Multi-stage incident involving ${tactics.slice(0, 2).join(' & ')} ${where}`;
  return `${(alerts[0] as Alert).title} ${where}`;
}

const TACTIC_LABELS: Record<string, string> = Object.fromEntries(
  Object.values(TACTICS).map((tactic) => [tactic.category, tactic.label]),
);

function incidentUri(tenantId: string, incidentId: number): string {
  return `https://security.microsoft.com/incidents/${incidentId}?tid=${tenantId}`;
}

function between(rng: SeededRandom, from: bigint, to: bigint): bigint {
  if (to <= from) return from;
  return from + BigInt(Math.floor(rng.next() * Number(to - from)));
}

function minTicks(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function maxTicks(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
