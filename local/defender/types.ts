/**
 * The Defender XDR incident payload, field for field as `GET /api/incidents` returns it
 * (camelCase, timestamps as ISO strings with up to 7 fractional digits). Unknown fields that
 * practice shows (`detectorId`, device `tags`, `vmMetadata`, …) are part of the shape too.
 */

export const INCIDENT_STATUSES = ['Active', 'InProgress', 'Resolved', 'Redirected'] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

export const SEVERITIES = ['UnSpecified', 'Informational', 'Low', 'Medium', 'High'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const CLASSIFICATIONS = ['Unknown', 'FalsePositive', 'TruePositive', 'InformationalExpectedActivity'] as const;
export type Classification = (typeof CLASSIFICATIONS)[number];

/** Both the documented names and the ones seen in practice (the docs and payloads disagree). */
export const DETERMINATIONS = [
  'NotAvailable',
  'Apt',
  'MultiStagedAttack',
  'MaliciousUserActivity',
  'Malware',
  'Phishing',
  'UnwantedSoftware',
  'SecurityTesting',
  'SecurityPersonnel',
  'LineOfBusinessApplication',
  'ConfirmedUserActivity',
  'ConfirmedActivity',
  'CompromisedUser',
  'CompromisedAccount',
  'Clean',
  'NotMalicious',
  'InsufficientData',
  'NoEnoughDataToValidate',
  'Other',
] as const;
export type Determination = (typeof DETERMINATIONS)[number];

/**
 * What an update may set, by the classification the incident will have: the update page's table
 * (MicrosoftDocs/defender-docs defender-xdr/api-update-incidents.md, "Request body", which spells
 * `NoEnoughDataToValidate` so; its constraint line "only with TruePositive" contradicts the table,
 * and the table is taken). Apt and SecurityPersonnel were retired from the API in August 2022.
 * `NotAvailable` clears a determination.
 */
export const DETERMINATIONS_BY_CLASSIFICATION: Partial<Record<Classification, readonly Determination[]>> = {
  TruePositive: [
    'MultiStagedAttack',
    'MaliciousUserActivity',
    'CompromisedAccount',
    'Malware',
    'Phishing',
    'UnwantedSoftware',
    'Other',
  ],
  InformationalExpectedActivity: ['SecurityTesting', 'LineOfBusinessApplication', 'ConfirmedActivity', 'Other'],
  FalsePositive: ['Clean', 'NoEnoughDataToValidate', 'Other'],
};
export const SETTABLE_DETERMINATIONS: readonly Determination[] = [
  'NotAvailable',
  ...new Set(Object.values(DETERMINATIONS_BY_CLASSIFICATION).flat()),
];

export const SERVICE_SOURCES = [
  'MicrosoftDefenderForEndpoint',
  'MicrosoftDefenderForOffice',
  'MicrosoftCloudAppSecurity',
  'AzureAdIdentityProtection',
  'MicrosoftDefenderForIdentity',
] as const;
export type ServiceSource = (typeof SERVICE_SOURCES)[number];

export type AlertStatus = 'New' | 'InProgress' | 'Resolved';
export type RiskScore = 'None' | 'Informational' | 'Low' | 'Medium' | 'High';

export interface Comment {
  comment: string;
  createdBy: string;
  createdTime: string;
}

export interface VmMetadata {
  vmId: string;
  cloudProvider: string;
  resourceId: string;
  subscriptionId: string;
}

export interface Device {
  mdatpDeviceId: string;
  aadDeviceId: string | null;
  deviceDnsName: string;
  osPlatform: string;
  version: string;
  osProcessor: string;
  osBuild: number;
  healthStatus: string;
  riskScore: RiskScore;
  rbacGroupName: string;
  rbacGroupId: number;
  firstSeen: string;
  tags: string[];
  defenderAvStatus: string;
  onboardingStatus: string;
  vmMetadata: VmMetadata | null;
}

/** Every type-specific entity field; an entity carries all of them, `null` when unused. */
export const ENTITY_FIELDS = [
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
export type EntityField = (typeof ENTITY_FIELDS)[number];

export type EntityType =
  | 'User'
  | 'Ip'
  | 'Url'
  | 'File'
  | 'Process'
  | 'MailBox'
  | 'MailMessage'
  | 'MailCluster'
  | 'Registry'
  | 'SecurityGroup'
  | 'CloudApplication';

export type Entity = {
  entityType: EntityType;
  evidenceCreationTime: string;
  verdict: 'Malicious' | 'Suspicious' | 'Clean' | 'Unknown';
  remediationStatus: 'None' | 'Remediated' | 'Prevented' | 'Blocked' | 'NotFound';
} & { [K in Exclude<EntityField, 'processId' | 'parentProcessId'>]: string | null } & {
  processId: number | null;
  parentProcessId: number | null;
};

export interface Alert {
  alertId: string;
  providerAlertId: string;
  incidentId: number;
  serviceSource: ServiceSource;
  creationTime: string;
  lastUpdatedTime: string;
  resolvedTime: string | null;
  firstActivity: string;
  lastActivity: string;
  title: string;
  description: string;
  category: string;
  status: AlertStatus;
  severity: Severity;
  investigationId: number | null;
  investigationState: string;
  classification: Classification | null;
  determination: Determination | null;
  detectionSource: string;
  detectorId: string;
  assignedTo: string | null;
  actorName: string | null;
  threatFamilyName: string | null;
  mitreTechniques: string[];
  devices: Device[];
  entities: Entity[];
}

export interface Incident {
  incidentId: number;
  incidentUri: string;
  redirectIncidentId: number | null;
  incidentName: string;
  createdTime: string;
  lastUpdateTime: string;
  assignedTo: string | null;
  classification: Classification;
  determination: Determination;
  status: IncidentStatus;
  severity: Severity;
  tags: string[];
  comments: Comment[];
  alerts: Alert[];
}
