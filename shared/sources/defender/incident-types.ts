/**
 * The Defender XDR incident as the app reads it (`defender-api.md`): an incident, its alerts, their
 * devices and entities. Every field is optional and may be null, because incidents also arrive
 * through a webhook whose sender may push an older, thinner or odd payload; unknown fields are kept
 * (index signatures) and passed on untouched. Code that reads these must still check each value's
 * type at run time: these types document the shape, they do not promise it.
 */

export const SEVERITIES = ['UnSpecified', 'Informational', 'Low', 'Medium', 'High'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const INCIDENT_STATUSES = ['Active', 'InProgress', 'Resolved', 'Redirected'] as const;
/** Current names, and InformationalExpectedActivity from older payloads. */
export const CLASSIFICATIONS = ['Unknown', 'FalsePositive', 'TruePositive', 'InformationalExpectedActivity'] as const;
/** The documentation's names and those seen in practice (the two disagree; both are accepted). */
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
  'NotEnoughDataToValidate',
  'Other',
] as const;

/**
 * The determinations an update may set, paired with the classification the incident will have, as
 * the update page's table gives them (MicrosoftDocs/defender-docs defender-xdr/api-update-incidents.md,
 * "Request body"; `NoEnoughDataToValidate` is spelled as there). The same page's constraint line
 * ("determination only if classification is TruePositive") contradicts its own table: the table is
 * taken. `NotAvailable` clears a determination with any classification.
 */
export const DETERMINATIONS_BY_CLASSIFICATION = {
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
} as const satisfies Partial<Record<(typeof CLASSIFICATIONS)[number], readonly string[]>>;
export const SETTABLE_DETERMINATIONS = [
  'NotAvailable',
  ...new Set(Object.values(DETERMINATIONS_BY_CLASSIFICATION).flat()),
] as readonly (typeof DETERMINATIONS)[number][];

/** Whether `determination` may be set on an incident whose classification will be `classification`. */
export function determinationFits(determination: string, classification: string | null | undefined): boolean {
  if (determination === 'NotAvailable') return true;
  const allowed = (DETERMINATIONS_BY_CLASSIFICATION as Record<string, readonly string[]>)[classification ?? ''];
  return allowed?.includes(determination) ?? false;
}

/** The determinations that go with `classification`, for an error message. */
export function determinationsFor(classification: string | null | undefined): string {
  const allowed = (DETERMINATIONS_BY_CLASSIFICATION as Record<string, readonly string[]>)[classification ?? ''];
  return allowed
    ? `with ${classification} it is one of ${allowed.join(', ')} (or NotAvailable)`
    : `with ${classification ?? 'no classification'} only NotAvailable`;
}
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

/** Alert status: New and InProgress are the active ones. */
export const ALERT_STATUSES = ['New', 'InProgress', 'Resolved'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

/** A device's risk score as alerts carry it. */
export const RISK_SCORES = ['None', 'Informational', 'Low', 'Medium', 'High'] as const;
export type RiskScore = (typeof RISK_SCORES)[number];

export interface IncidentComment {
  comment?: string | null;
  createdBy?: string | null;
  createdTime?: string | null;
  [field: string]: unknown;
}

export interface IncidentDevice {
  /** The payloads' name for the device id (the docs' table says `DeviceId`). */
  mdatpDeviceId?: string | null;
  deviceId?: string | null;
  aadDeviceId?: string | null;
  deviceDnsName?: string | null;
  osPlatform?: string | null;
  version?: string | null;
  osProcessor?: string | null;
  osBuild?: number | null;
  healthStatus?: string | null;
  riskScore?: string | null;
  rbacGroupName?: string | null;
  rbacGroupId?: number | null;
  firstSeen?: string | null;
  tags?: string[] | null;
  [field: string]: unknown;
}

/** An entity: `entityType` plus type-specific fields, all present and null when unused. */
export interface IncidentEntity {
  entityType?: string | null;
  sha1?: string | null;
  sha256?: string | null;
  fileName?: string | null;
  filePath?: string | null;
  processId?: number | null;
  processCommandLine?: string | null;
  processCreationTime?: string | null;
  parentProcessId?: number | null;
  parentProcessCreationTime?: string | null;
  ipAddress?: string | null;
  url?: string | null;
  accountName?: string | null;
  domainName?: string | null;
  userSid?: string | null;
  aadUserId?: string | null;
  userPrincipalName?: string | null;
  mailboxDisplayName?: string | null;
  mailboxAddress?: string | null;
  clusterBy?: string | null;
  sender?: string | null;
  recipient?: string | null;
  subject?: string | null;
  deliveryAction?: string | null;
  securityGroupId?: string | null;
  securityGroupName?: string | null;
  registryHive?: string | null;
  registryKey?: string | null;
  registryValueType?: string | null;
  registryValue?: string | null;
  deviceId?: string | null;
  [field: string]: unknown;
}

export interface IncidentAlert {
  alertId?: string | null;
  incidentId?: number | null;
  serviceSource?: string | null;
  creationTime?: string | null;
  lastUpdatedTime?: string | null;
  resolvedTime?: string | null;
  firstActivity?: string | null;
  lastActivity?: string | null;
  title?: string | null;
  description?: string | null;
  /** A MITRE-like tactic such as Impact or CredentialAccess. */
  category?: string | null;
  status?: string | null;
  severity?: string | null;
  investigationId?: number | null;
  investigationState?: string | null;
  classification?: string | null;
  determination?: string | null;
  detectionSource?: string | null;
  assignedTo?: string | null;
  actorName?: string | null;
  threatFamilyName?: string | null;
  mitreTechniques?: string[] | null;
  devices?: IncidentDevice[] | null;
  entities?: IncidentEntity[] | null;
  [field: string]: unknown;
}

export interface Incident {
  incidentId?: number | null;
  /** Set when the incident was merged into another; such incidents come without alerts. */
  redirectIncidentId?: number | null;
  incidentName?: string | null;
  incidentUri?: string | null;
  createdTime?: string | null;
  lastUpdateTime?: string | null;
  assignedTo?: string | null;
  classification?: string | null;
  determination?: string | null;
  status?: string | null;
  severity?: string | null;
  tags?: string[] | null;
  comments?: IncidentComment[] | null;
  alerts?: IncidentAlert[] | null;
  [field: string]: unknown;
}

/** A plain JSON object (not null, not an array), the only thing fields are read from. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A trimmed non-empty string, or undefined for anything else. */
export function textOf(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  return trimmed === '' ? undefined : trimmed;
}

/** The records of a list field; a missing, null or non-array value (or non-object items) reads as none. */
export function recordsOf(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter(isRecord) : [];
}

/** An incident id: a non-negative integer, or a string of digits (Graph spells ids as strings). */
export function incidentIdOf(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value === 'string' && /^\d{1,15}$/.test(value.trim())) return Number(value.trim());
  return undefined;
}

/** The alerts of an incident-shaped value (none when it has none or is not an incident). */
export function alertsOf(incident: unknown): Record<string, unknown>[] {
  return isRecord(incident) ? recordsOf(incident.alerts) : [];
}

/** Matches a known name case-insensitively (`high` → `High`); undefined when it is not one of them. */
export function knownName<T extends string>(names: readonly T[], value: unknown): T | undefined {
  const text = textOf(value)?.toLowerCase();
  return text === undefined ? undefined : names.find((name) => name.toLowerCase() === text);
}
