import {
  ALERT_STATUSES,
  CLASSIFICATIONS,
  DETERMINATIONS,
  INCIDENT_STATUSES,
  SEVERITIES,
  incidentIdOf,
  isRecord,
  knownName,
  recordsOf,
  textOf,
  type Incident,
  type IncidentAlert,
  type IncidentComment,
  type IncidentDevice,
  type IncidentEntity,
} from '../defender/incident-types.js';
import { isUtcTimestamp, normalizeTimestamp } from '../../timestamps.js';

/**
 * A Microsoft Graph security incident (`microsoft.graph.security.incident`, v1.0, with `$expand=alerts`) seen
 * in the Defender XDR incident shape (`defender-api.md`) that the enricher, routing rules, Teams/Slack formats
 * and Sentinel rows read. It is the inverse of the Graph stand-in's Defender → Graph mapping: each Graph
 * property goes back to the Defender property that Microsoft's pages describe the same way
 * (MicrosoftDocs/defender-docs defender-xdr/api-list-incidents.md beside microsoftgraph/microsoft-graph-docs-contrib
 * api-reference/v1.0/resources/security-incident.md, security-alert.md, security-alertcomment.md and the
 * *evidence.md pages). Graph properties without a Defender counterpart (systemTags, description, summary,
 * priorityScore, evidence roles…) stay out: the routed message keeps the Graph incident as it came.
 *
 * The input is whatever a queue or a remote API delivered: every value's type is checked, a wrong one reads as
 * absent (null), nothing recurses, enum lookups use Maps (a value such as `constructor` finds nothing inherited),
 * and only strings, numbers and fresh objects reach the view, never an object of the input. Nothing is capped:
 * deriveEnrichment caps what it keeps, and structure limits are the queue's (shared/messages/json-limits.ts).
 */

type Table = ReadonlyMap<string, string | null>;

/** A table keyed by the lower-cased Graph member, so `high`, `High` and `HIGH` are one value. */
const table = (entries: [string, string | null][]): Table =>
  new Map(entries.map(([member, defender]) => [member.toLowerCase(), defender]));

/**
 * `unknownFutureValue` is the evolvable enumerations' sentinel: Graph sends it for a member the client did not
 * ask to see (`Prefer: include-unknown-enum-members`), so it says nothing about the value (Graph best
 * practices, "Handling future members in evolvable enumerations"). Every table reads it as null.
 */
const UNKNOWN_FUTURE_VALUE: [string, null] = ['unknownFutureValue', null];

/**
 * incidentStatus (security-incident.md, "incidentStatus values"). `awaitingAction` ("requires actions from
 * Defender Experts awaiting your action") has no Defender status: it reads as Active, the status of an open
 * incident someone must act on, so routes and the priority treat it as open rather than silently settled.
 */
const INCIDENT_STATUS = table([
  ['active', 'Active'],
  ['inProgress', 'InProgress'],
  ['resolved', 'Resolved'],
  ['redirected', 'Redirected'],
  ['awaitingAction', 'Active'],
  UNKNOWN_FUTURE_VALUE,
]);

/** alertSeverity: Graph's `unknown` is Defender's `UnSpecified`. */
const SEVERITY = table([
  ['unknown', 'UnSpecified'],
  ['informational', 'Informational'],
  ['low', 'Low'],
  ['medium', 'Medium'],
  ['high', 'High'],
  UNKNOWN_FUTURE_VALUE,
]);

/** alertClassification: the same members, PascalCase. */
const CLASSIFICATION = table([
  ['unknown', 'Unknown'],
  ['falsePositive', 'FalsePositive'],
  ['truePositive', 'TruePositive'],
  ['informationalExpectedActivity', 'InformationalExpectedActivity'],
  UNKNOWN_FUTURE_VALUE,
]);

/**
 * alertDetermination: the v1.0 schema's members and the older names the resource page still lists
 * (compromisedUser, clean, insufficientData, confirmedUserActivity), each back to the same name in
 * PascalCase — every one is a Defender spelling, and routing treats the renamed pairs as synonyms.
 * Graph's `unknown` is Defender's `NotAvailable` (no determination).
 */
const DETERMINATION = table([
  ['unknown', 'NotAvailable'],
  ['apt', 'Apt'],
  ['malware', 'Malware'],
  ['securityPersonnel', 'SecurityPersonnel'],
  ['securityTesting', 'SecurityTesting'],
  ['unwantedSoftware', 'UnwantedSoftware'],
  ['other', 'Other'],
  ['multiStagedAttack', 'MultiStagedAttack'],
  ['compromisedAccount', 'CompromisedAccount'],
  ['compromisedUser', 'CompromisedUser'],
  ['phishing', 'Phishing'],
  ['maliciousUserActivity', 'MaliciousUserActivity'],
  ['notMalicious', 'NotMalicious'],
  ['clean', 'Clean'],
  ['notEnoughDataToValidate', 'NotEnoughDataToValidate'],
  ['insufficientData', 'InsufficientData'],
  ['confirmedActivity', 'ConfirmedActivity'],
  ['confirmedUserActivity', 'ConfirmedUserActivity'],
  ['lineOfBusinessApplication', 'LineOfBusinessApplication'],
  UNKNOWN_FUTURE_VALUE,
]);

/** alertStatus: Defender's alerts have no `unknown` status, so it reads as none. */
const ALERT_STATUS = table([
  ['unknown', null],
  ['new', 'New'],
  ['inProgress', 'InProgress'],
  ['resolved', 'Resolved'],
  UNKNOWN_FUTURE_VALUE,
]);

/**
 * serviceSource (security-alert.md) → the names Defender's alerts use: Defender for Office is
 * `MicrosoftDefenderForOffice`, Defender for Cloud Apps `MicrosoftCloudAppSecurity` (its old name, still the
 * API's). Graph's `unknown` reads as none. A member with no Defender name here (microsoftSentinel,
 * microsoftDefenderForCloud, and whatever comes later) is kept with its first letter raised
 * (`MicrosoftSentinel`): Defender's spellings are PascalCase, and routing compares case-insensitively.
 */
const SERVICE_SOURCE = table([
  ['unknown', null],
  ['microsoftDefenderForEndpoint', 'MicrosoftDefenderForEndpoint'],
  ['microsoftDefenderForIdentity', 'MicrosoftDefenderForIdentity'],
  ['microsoftDefenderForCloudApps', 'MicrosoftCloudAppSecurity'],
  ['microsoftDefenderForOffice365', 'MicrosoftDefenderForOffice'],
  ['microsoft365Defender', 'Microsoft365Defender'],
  ['azureAdIdentityProtection', 'AzureAdIdentityProtection'],
  ['microsoftAppGovernance', 'AppGovernance'],
  ['dataLossPrevention', 'DataLossPrevention'],
  UNKNOWN_FUTURE_VALUE,
]);

/**
 * detectionSource → the names Defender's payloads use (the pairing is inferred from the names, as the
 * stand-in's mapping infers it): `antivirus` is WindowsDefenderAv, `microsoftDefenderForEndpoint` (EDR)
 * WindowsDefenderAtp, `customTi` CustomerTI (Defender for Endpoint's spelling). Others as for serviceSource.
 */
const DETECTION_SOURCE = table([
  ['unknown', null],
  ['microsoftDefenderForEndpoint', 'WindowsDefenderAtp'],
  ['antivirus', 'WindowsDefenderAv'],
  ['smartScreen', 'WindowsDefenderSmartScreen'],
  ['customTi', 'CustomerTI'],
  ['automatedInvestigation', 'AutomatedInvestigation'],
  ['microsoftThreatExperts', 'ThreatExperts'],
  ['customDetection', 'CustomDetection'],
  ['microsoftDefenderForOffice365', 'OfficeATP'],
  ['microsoftDefenderForIdentity', 'AzureAtp'],
  ['cloudAppSecurity', 'MCAS'],
  ['microsoft365Defender', 'MTP'],
  ['azureAdIdentityProtection', 'AadIdentityProtection'],
  ['manual', 'Manual'],
  UNKNOWN_FUTURE_VALUE,
]);

/** evidenceVerdict: Graph has no "clean" verdict; `noThreatsFound` is its counterpart (security-alertevidence.md). */
const VERDICT = table([
  ['unknown', 'Unknown'],
  ['suspicious', 'Suspicious'],
  ['malicious', 'Malicious'],
  ['noThreatsFound', 'Clean'],
  UNKNOWN_FUTURE_VALUE,
]);

/** A member of a closed enumeration in Defender's spelling, null for anything else. Defender's own spellings are read too. */
function closedMember(members: Table, defenderNames: readonly string[], value: unknown): string | null {
  const text = textOf(value);
  if (text === undefined) return null;
  const found = members.get(text.toLowerCase());
  return found !== undefined ? found : (knownName(defenderNames, text) ?? null);
}

/** A member of an open list (service and detection sources): the table's Defender name, else the member with its first letter raised. */
function openMember(members: Table, value: unknown): string | null {
  const text = textOf(value);
  if (text === undefined) return null;
  const found = members.get(text.toLowerCase());
  return found !== undefined ? found : upperFirst(text);
}

/**
 * A lower-camel member whose Defender name is the same word in PascalCase (device health, risk score, AV and
 * onboarding status, investigation state, remediation status, cloud provider): `impairedCommunication` →
 * `ImpairedCommunication`. The sentinel reads as none.
 */
function pascalMember(value: unknown): string | null {
  const text = textOf(value);
  if (text === undefined || text.toLowerCase() === 'unknownfuturevalue') return null;
  return upperFirst(text);
}

const upperFirst = (text: string): string => text.charAt(0).toUpperCase() + text.slice(1);

/** An own property: a field the input does not hold never reads as something inherited. */
function field(record: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(record, name) ? record[name] : undefined;
}

/** A string as it was sent (timestamps, names, ids), or null. */
function stringOf(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function numberOf(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function stringsOf(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/** A nested object (fileDetails, userAccount…), or an empty one. */
function recordOf(value: unknown): Record<string, unknown> {
  return isRecord(value) ? value : {};
}

/** A Graph incident seen in the Defender incident shape the enricher, routing rules, formats and Sentinel rows read. */
export function defenderViewOf(graphIncident: Record<string, unknown>): Record<string, unknown> {
  const g: Record<string, unknown> = isRecord(graphIncident) ? graphIncident : {};
  const get = (name: string) => field(g, name);
  // The docs' own $expand=alerts example writes `tags` where the schema has `customTags` (security-list-incidents.md, example 2).
  const tags = Array.isArray(get('customTags')) ? get('customTags') : get('tags');
  const view: Incident = {
    incidentId: incidentIdOf(get('id')) ?? null,
    incidentUri: graphPortalUrl(g) ?? null,
    redirectIncidentId: incidentIdOf(get('redirectIncidentId')) ?? null,
    incidentName: stringOf(get('displayName')),
    createdTime: stringOf(get('createdDateTime')),
    lastUpdateTime: stringOf(get('lastUpdateDateTime')),
    assignedTo: stringOf(get('assignedTo')),
    classification: closedMember(CLASSIFICATION, CLASSIFICATIONS, get('classification')),
    determination: closedMember(DETERMINATION, DETERMINATIONS, get('determination')),
    status: closedMember(INCIDENT_STATUS, INCIDENT_STATUSES, get('status')),
    severity: closedMember(SEVERITY, SEVERITIES, get('severity')),
    tags: stringsOf(tags),
    comments: recordsOf(get('comments')).map(commentOf),
    // Without $expand=alerts there are none to see: deriveEnrichment then flags the incident as needing its full form.
    alerts: recordsOf(get('alerts')).map(alertOf),
  };
  return view;
}

/**
 * alertComment `{comment, createdByDisplayName, createdDateTime}` (security-alertcomment.md) → Defender's
 * `{comment, createdBy, createdTime}`; the docs' incident examples write Defender's names, so those are read too.
 */
function commentOf(comment: Record<string, unknown>): IncidentComment {
  const by = stringOf(field(comment, 'createdByDisplayName')) ?? stringOf(field(comment, 'createdBy'));
  const at = stringOf(field(comment, 'createdDateTime')) ?? stringOf(field(comment, 'createdTime'));
  return { comment: stringOf(field(comment, 'comment')), createdBy: by, createdTime: at };
}

/** security-alert.md → the Defender alert (api-list-incidents.md, "alerts"). `investigationId` has no Graph counterpart. */
function alertOf(alert: Record<string, unknown>): IncidentAlert {
  const get = (name: string) => field(alert, name);
  const devices: IncidentDevice[] = [];
  const entities: IncidentEntity[] = [];
  for (const evidence of recordsOf(get('evidence'))) {
    const type = evidenceType(evidence);
    if (type === 'microsoft.graph.security.deviceevidence') devices.push(deviceOf(evidence));
    else {
      const entity = type === undefined ? undefined : ENTITY_OF.get(type)?.(evidence);
      if (entity) entities.push(entity);
    }
  }
  // Graph writes `unknown` for an alert no one has classified; Defender writes null (both pages' examples).
  const unclassified = (value: unknown) => (textOf(value)?.toLowerCase() === 'unknown' ? undefined : value);
  return {
    alertId: stringOf(get('id')),
    incidentId: incidentIdOf(get('incidentId')) ?? null,
    serviceSource: openMember(SERVICE_SOURCE, get('serviceSource')),
    creationTime: stringOf(get('createdDateTime')),
    lastUpdatedTime: stringOf(get('lastUpdateDateTime')),
    resolvedTime: stringOf(get('resolvedDateTime')),
    firstActivity: stringOf(get('firstActivityDateTime')),
    lastActivity: stringOf(get('lastActivityDateTime')),
    title: stringOf(get('title')),
    description: stringOf(get('description')),
    category: stringOf(get('category')),
    status: closedMember(ALERT_STATUS, ALERT_STATUSES, get('status')),
    severity: closedMember(SEVERITY, SEVERITIES, get('severity')),
    investigationState: pascalMember(get('investigationState')),
    classification: closedMember(CLASSIFICATION, CLASSIFICATIONS, unclassified(get('classification'))),
    determination: closedMember(DETERMINATION, DETERMINATIONS, unclassified(get('determination'))),
    detectionSource: openMember(DETECTION_SOURCE, get('detectionSource')),
    detectorId: stringOf(get('detectorId')),
    assignedTo: stringOf(get('assignedTo')),
    actorName: stringOf(get('actorDisplayName')),
    threatFamilyName: stringOf(get('threatFamilyName')),
    mitreTechniques: stringsOf(get('mitreTechniques')),
    devices,
    entities,
  };
}

/** `#microsoft.graph.security.userEvidence` → `microsoft.graph.security.userevidence`. */
function evidenceType(evidence: Record<string, unknown>): string | undefined {
  const text = textOf(field(evidence, '@odata.type'))?.toLowerCase();
  return text?.startsWith('#') ? text.slice(1) : text;
}

/** deviceEvidence (security-deviceevidence.md) → a Defender alert's device. `osProcessor` has no Graph counterpart. */
function deviceOf(evidence: Record<string, unknown>): IncidentDevice {
  const get = (name: string) => field(evidence, name);
  const vm = get('vmMetadata');
  return {
    mdatpDeviceId: stringOf(get('mdeDeviceId')),
    aadDeviceId: stringOf(get('azureAdDeviceId')),
    deviceDnsName: stringOf(get('deviceDnsName')),
    osPlatform: stringOf(get('osPlatform')),
    version: stringOf(get('version')),
    osBuild: numberOf(get('osBuild')),
    healthStatus: pascalMember(get('healthStatus')),
    riskScore: pascalMember(get('riskScore')),
    rbacGroupName: stringOf(get('rbacGroupName')),
    rbacGroupId: numberOf(get('rbacGroupId')),
    firstSeen: stringOf(get('firstSeenDateTime')),
    tags: stringsOf(get('tags')),
    defenderAvStatus: pascalMember(get('defenderAvStatus')),
    onboardingStatus: pascalMember(get('onboardingStatus')),
    vmMetadata: isRecord(vm)
      ? {
          vmId: stringOf(field(vm, 'vmId')),
          cloudProvider: pascalMember(field(vm, 'cloudProvider')),
          resourceId: stringOf(field(vm, 'resourceId')),
          subscriptionId: stringOf(field(vm, 'subscriptionId')),
        }
      : null,
  };
}

/** Every type-specific field of a Defender entity: all present, null when unused (defender-api.md, "Entity"). */
const ENTITY_FIELDS = [
  'sha1',
  'sha256',
  'fileName',
  'filePath',
  'processId',
  'processCommandLine',
  'processCreationTime',
  'parentProcessId',
  'parentProcessCreationTime',
  'ipAddress',
  'url',
  'accountName',
  'domainName',
  'userSid',
  'aadUserId',
  'userPrincipalName',
  'mailboxDisplayName',
  'mailboxAddress',
  'clusterBy',
  'sender',
  'recipient',
  'subject',
  'deliveryAction',
  'securityGroupId',
  'securityGroupName',
  'registryHive',
  'registryKey',
  'registryValueType',
  'registryValue',
  'deviceId',
] as const;
type EntityFields = Partial<Record<(typeof ENTITY_FIELDS)[number], string | number | null>>;

/** A Defender entity of `entityType` with the evidence's common properties (security-alertevidence.md) and `fields`. */
function entityOf(entityType: string, evidence: Record<string, unknown>, fields: EntityFields): IncidentEntity {
  const entity: IncidentEntity = {
    entityType,
    evidenceCreationTime: stringOf(field(evidence, 'createdDateTime')),
    verdict: closedMember(VERDICT, [], field(evidence, 'verdict')),
    remediationStatus: pascalMember(field(evidence, 'remediationStatus')),
  };
  const open: Record<string, unknown> = entity;
  for (const name of ENTITY_FIELDS) open[name] = Object.hasOwn(fields, name) ? (fields[name] ?? null) : null;
  return entity;
}

/** userAccount (security-useraccount.md) → the user fields Defender's entities carry. */
function accountFields(value: unknown): EntityFields {
  const account = recordOf(value);
  return {
    accountName: stringOf(field(account, 'accountName')),
    domainName: stringOf(field(account, 'domainName')),
    userSid: stringOf(field(account, 'userSid')),
    aadUserId: stringOf(field(account, 'azureAdUserId')),
    userPrincipalName: stringOf(field(account, 'userPrincipalName')),
  };
}

/** fileDetails (security-filedetails.md) → the file fields of Defender's File and Process entities. */
function fileFields(value: unknown): EntityFields {
  const file = recordOf(value);
  return {
    sha1: stringOf(field(file, 'sha1')),
    sha256: stringOf(field(file, 'sha256')),
    fileName: stringOf(field(file, 'fileName')),
    filePath: stringOf(field(file, 'filePath')),
  };
}

type Read = (evidence: Record<string, unknown>) => IncidentEntity;
const textField = (evidence: Record<string, unknown>, name: string) => stringOf(field(evidence, name));

/**
 * Each evidence type that has a Defender entity type (the stand-in's mapping, reversed): userEvidence → User,
 * ipEvidence → Ip, urlEvidence → Url, fileEvidence → File, processEvidence → Process, mailboxEvidence → MailBox,
 * analyzedMessageEvidence → MailMessage, mailClusterEvidence → MailCluster, registryKeyEvidence and
 * registryValueEvidence → Registry, securityGroupEvidence → SecurityGroup, cloudApplicationEvidence →
 * CloudApplication. Other evidence types (cloud resources, logon sessions, OAuth apps…) have no Defender entity
 * type and are left out of the view; an evidence without `@odata.type` cannot be read at all.
 */
const ENTITY_OF: ReadonlyMap<string, Read> = new Map<string, Read>(
  (
    [
      ['userEvidence', (e) => entityOf('User', e, accountFields(field(e, 'userAccount')))],
      ['ipEvidence', (e) => entityOf('Ip', e, { ipAddress: textField(e, 'ipAddress') })],
      ['urlEvidence', (e) => entityOf('Url', e, { url: textField(e, 'url') })],
      [
        'fileEvidence',
        (e) => entityOf('File', e, { ...fileFields(field(e, 'fileDetails')), deviceId: textField(e, 'mdeDeviceId') }),
      ],
      [
        'processEvidence',
        (e) =>
          entityOf('Process', e, {
            ...fileFields(field(e, 'imageFile')),
            ...accountFields(field(e, 'userAccount')),
            processId: numberOf(field(e, 'processId')),
            processCommandLine: textField(e, 'processCommandLine'),
            processCreationTime: textField(e, 'processCreationDateTime'),
            parentProcessId: numberOf(field(e, 'parentProcessId')),
            parentProcessCreationTime: textField(e, 'parentProcessCreationDateTime'),
            deviceId: textField(e, 'mdeDeviceId'),
          }),
      ],
      [
        'mailboxEvidence',
        (e) => {
          const account = accountFields(field(e, 'userAccount'));
          return entityOf('MailBox', e, {
            ...account,
            mailboxDisplayName: textField(e, 'displayName'),
            mailboxAddress: textField(e, 'primaryAddress'),
            userPrincipalName: textField(e, 'upn') ?? account.userPrincipalName ?? null,
          });
        },
      ],
      [
        'analyzedMessageEvidence',
        (e) =>
          entityOf('MailMessage', e, {
            // Defender's `sender` is the From address a recipient sees: Graph's P2 sender (inferred, as the mapping does).
            sender:
              textField(recordOf(field(e, 'p2Sender')), 'emailAddress') ??
              textField(recordOf(field(e, 'p1Sender')), 'emailAddress'),
            recipient: textField(e, 'recipientEmailAddress'),
            subject: textField(e, 'subject'),
            deliveryAction: textField(e, 'deliveryAction'),
          }),
      ],
      ['mailClusterEvidence', (e) => entityOf('MailCluster', e, { clusterBy: textField(e, 'clusterBy') })],
      [
        'registryKeyEvidence',
        (e) =>
          entityOf('Registry', e, {
            registryHive: textField(e, 'registryHive'),
            registryKey: textField(e, 'registryKey'),
          }),
      ],
      [
        'registryValueEvidence',
        (e) =>
          entityOf('Registry', e, {
            registryHive: textField(e, 'registryHive'),
            registryKey: textField(e, 'registryKey'),
            registryValueType: textField(e, 'registryValueType'),
            registryValue: textField(e, 'registryValue'),
            deviceId: textField(e, 'mdeDeviceId'),
          }),
      ],
      [
        'securityGroupEvidence',
        (e) =>
          entityOf('SecurityGroup', e, {
            securityGroupId: textField(e, 'securityGroupId'),
            securityGroupName: textField(e, 'displayName'),
          }),
      ],
      ['cloudApplicationEvidence', (e) => entityOf('CloudApplication', e, {})],
    ] as [string, Read][]
  ).map(([type, read]) => [`microsoft.graph.security.${type}`.toLowerCase(), read]),
);

/** A value named in a problem: its type, or a string's first characters quoted. */
function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * The Defender incident id and lastUpdateTime of a Graph incident (its `id` is the Defender incident id as a
 * string), or a problem when the id is not a decimal integer or lastUpdateDateTime is missing/not a timestamp.
 * The id takes what the relay's ids take (`incidentIdOf`: up to 15 digits, so it stays an exact number); the
 * time comes back normalised to seven fractional digits, as event ids and checkpoints compare it.
 */
export function graphIncidentVersion(
  graphIncident: unknown,
): { incidentId: number; lastUpdateTime: string } | { problem: string } {
  if (!isRecord(graphIncident)) return { problem: `the Graph incident is ${shown(graphIncident)}, not an object` };
  const id = field(graphIncident, 'id');
  const incidentId = incidentIdOf(id);
  if (incidentId === undefined)
    return {
      problem:
        id === undefined
          ? 'the Graph incident has no id (the Defender incident id, a decimal integer of at most 15 digits)'
          : `the Graph incident's id ${shown(id)} is not a decimal integer of at most 15 digits (the Defender incident id)`,
    };
  const time = field(graphIncident, 'lastUpdateDateTime');
  if (typeof time !== 'string' || !isUtcTimestamp(time))
    return {
      problem:
        time === undefined
          ? `Graph incident ${incidentId} has no lastUpdateDateTime (an ISO 8601 UTC timestamp such as 2021-09-30T09:35:45.1133333Z)`
          : `Graph incident ${incidentId}: lastUpdateDateTime ${shown(time)} is not an ISO 8601 UTC timestamp such as 2021-09-30T09:35:45.1133333Z`,
    };
  return { incidentId, lastUpdateTime: normalizeTimestamp(time) };
}

/** Slack refuses a button URL over 3000 characters (Block Kit, "Button element": `url`). */
const MAX_PORTAL_URL = 3000;
const PORTAL = 'https://security.microsoft.com/';

/**
 * incidentWebUrl when it is an https://security.microsoft.com/ URL (it ends up as a button in Teams/Slack), else
 * undefined. The text must start with exactly that origin and a slash, so userinfo (`…microsoft.com@evil`),
 * ports, other hosts and schemes are refused; whitespace, control characters and backslashes are refused too,
 * since a URL parser drops or rewrites them and the link shown would not be the link checked.
 */
export function graphPortalUrl(graphIncident: Record<string, unknown>): string | undefined {
  if (!isRecord(graphIncident)) return undefined;
  const value = field(graphIncident, 'incidentWebUrl');
  if (typeof value !== 'string' || value.length > MAX_PORTAL_URL) return undefined;
  // eslint-disable-next-line no-control-regex
  if (!value.startsWith(PORTAL) || /[\s\u0000-\u001f\u007f-\u009f\\]/.test(value)) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  const exact =
    url.protocol === 'https:' &&
    url.hostname === 'security.microsoft.com' &&
    url.port === '' &&
    url.username === '' &&
    url.password === '';
  return exact && url.href.length <= MAX_PORTAL_URL ? url.href : undefined;
}
