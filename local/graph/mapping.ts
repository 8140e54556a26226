import type {
  Alert as DefenderAlert,
  Comment as DefenderComment,
  Device as DefenderDevice,
  Entity as DefenderEntity,
  Incident as DefenderIncident,
} from '../defender/types.js';
import {
  INVESTIGATION_STATES,
  type AlertClassification,
  type AlertComment,
  type AlertDetermination,
  type AlertSeverity,
  type AlertStatus,
  type DetectionSource,
  type DeviceEvidence,
  type Evidence,
  type EvidenceBase,
  type FileDetails,
  type GraphAlert,
  type GraphIncident,
  type IncidentStatus,
  type InvestigationState,
  type ServiceSource,
  type UserAccount,
} from './types.js';

/**
 * One incident as the Defender XDR API writes it → the same incident as Microsoft Graph writes it, so the
 * two stand-ins describe comparable incidents (and tests can hold that the relay derives the same from both).
 * Each field pairs the Defender page's property (MicrosoftDocs/defender-docs defender-xdr/api-list-incidents.md,
 * "Schema mapping") with the Graph property the Graph page describes the same way
 * (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/resources/security-incident.md,
 * security-alert.md, the *evidence.md pages); both pages' examples show the same shapes (string ids, the
 * same timestamps, the portal URLs). Where the pages give no pairing, the choice is marked "inferred".
 * A Defender field without a Graph counterpart is dropped (incident `detectionSource`, alert
 * `investigationId`); a Graph field without a Defender source is null or empty, never invented.
 */
export function toGraphIncident(incident: DefenderIncident, tenantId: string): GraphIncident {
  return {
    id: String(incident.incidentId),
    incidentWebUrl:
      incident.incidentUri ?? `https://security.microsoft.com/incidents/${incident.incidentId}?tid=${tenantId}`,
    redirectIncidentId: incident.redirectIncidentId === null ? null : String(incident.redirectIncidentId),
    tenantId,
    displayName: incident.incidentName,
    createdDateTime: incident.createdTime,
    lastUpdateDateTime: incident.lastUpdateTime,
    assignedTo: incident.assignedTo ?? null,
    classification: toClassification(incident.classification) ?? 'unknown',
    determination: toDetermination(incident.determination) ?? 'unknown',
    status: toIncidentStatus(incident.status),
    severity: toSeverity(incident.severity),
    customTags: [...(incident.tags ?? [])],
    systemTags: [],
    description: null,
    summary: null,
    resolvingComment: null,
    lastModifiedBy: null,
    priorityScore: null,
    comments: (incident.comments ?? []).map(toComment),
    alerts: (incident.alerts ?? []).map((alert) => toGraphAlert(alert, incident, tenantId)),
  };
}

/** Defender `{comment, createdBy, createdTime}` → Graph alertComment (security-alertcomment.md). */
export function toComment(comment: DefenderComment): AlertComment {
  return { comment: comment.comment, createdByDisplayName: comment.createdBy, createdDateTime: comment.createdTime };
}

export function toGraphAlert(alert: DefenderAlert, incident: DefenderIncident, tenantId: string): GraphAlert {
  const created = alert.creationTime;
  return {
    id: alert.alertId,
    actorDisplayName: alert.actorName ?? null,
    alertPolicyId: null,
    // The portal link as both pages' examples write it (security-alert.md: alertWebUrl).
    alertWebUrl: `https://security.microsoft.com/alerts/${alert.alertId}?tid=${tenantId}`,
    assignedTo: alert.assignedTo ?? null,
    category: alert.category,
    // A new Defender alert has null classification and determination; Graph's example of the same kind of
    // alert writes both as `unknown` (security-list-incidents.md, example 2).
    classification: toClassification(alert.classification) ?? 'unknown',
    comments: [],
    createdDateTime: created,
    description: alert.description,
    detectionSource: toDetectionSource(alert.detectionSource),
    detectorId: alert.detectorId ?? null,
    determination: toDetermination(alert.determination) ?? 'unknown',
    evidence: [
      ...(alert.devices ?? []).map((device) => toDeviceEvidence(device, created)),
      ...(alert.entities ?? []).flatMap((entity) => toEvidence(entity) ?? []),
    ],
    firstActivityDateTime: alert.firstActivity ?? null,
    incidentId: String(alert.incidentId ?? incident.incidentId),
    incidentWebUrl:
      incident.incidentUri ?? `https://security.microsoft.com/incidents/${incident.incidentId}?tid=${tenantId}`,
    investigationState: toInvestigationState(alert.investigationState),
    lastActivityDateTime: alert.lastActivity ?? null,
    lastUpdateDateTime: alert.lastUpdatedTime,
    mitreTechniques: [...(alert.mitreTechniques ?? [])],
    productName: null,
    providerAlertId: alert.providerAlertId ?? alert.alertId,
    recommendedActions: null,
    resolvedDateTime: alert.resolvedTime ?? null,
    serviceSource: toServiceSource(alert.serviceSource),
    severity: toSeverity(alert.severity),
    status: toAlertStatus(alert.status),
    systemTags: [],
    tenantId,
    threatDisplayName: null,
    threatFamilyName: alert.threatFamilyName ?? null,
    title: alert.title,
  };
}

const lowerFirst = (text: string): string => text.charAt(0).toLowerCase() + text.slice(1);

/** Unknown, FalsePositive, TruePositive, InformationalExpectedActivity → the same members, lower-camel. */
export function toClassification(value: string | null | undefined): AlertClassification | null {
  if (value === null || value === undefined) return null;
  const map: Record<string, AlertClassification> = {
    Unknown: 'unknown',
    FalsePositive: 'falsePositive',
    TruePositive: 'truePositive',
    InformationalExpectedActivity: 'informationalExpectedActivity',
  };
  return map[value] ?? 'unknown';
}

/**
 * Defender's determinations (both the names its pages use and the ones its payloads use) → the v1.0 schema's
 * members. `NotAvailable` is Graph's `unknown`; the renamed pairs (CompromisedUser/CompromisedAccount,
 * Clean/NotMalicious, InsufficientData/NoEnoughDataToValidate, ConfirmedUserActivity/ConfirmedActivity) are
 * the same verdicts under the names the Graph update page and schema use.
 */
export function toDetermination(value: string | null | undefined): AlertDetermination | null {
  if (value === null || value === undefined) return null;
  const map: Record<string, AlertDetermination> = {
    NotAvailable: 'unknown',
    Apt: 'apt',
    Malware: 'malware',
    SecurityPersonnel: 'securityPersonnel',
    SecurityTesting: 'securityTesting',
    UnwantedSoftware: 'unwantedSoftware',
    Other: 'other',
    MultiStagedAttack: 'multiStagedAttack',
    CompromisedUser: 'compromisedAccount',
    CompromisedAccount: 'compromisedAccount',
    Phishing: 'phishing',
    MaliciousUserActivity: 'maliciousUserActivity',
    Clean: 'notMalicious',
    NotMalicious: 'notMalicious',
    InsufficientData: 'notEnoughDataToValidate',
    NoEnoughDataToValidate: 'notEnoughDataToValidate',
    ConfirmedUserActivity: 'confirmedActivity',
    ConfirmedActivity: 'confirmedActivity',
    LineOfBusinessApplication: 'lineOfBusinessApplication',
  };
  return map[value] ?? 'unknown';
}

export function toIncidentStatus(value: string): IncidentStatus {
  const map: Record<string, IncidentStatus> = {
    Active: 'active',
    InProgress: 'inProgress',
    Resolved: 'resolved',
    Redirected: 'redirected',
  };
  return map[value] ?? 'unknownFutureValue';
}

/** `UnSpecified` is Graph's `unknown`; the others keep their names. */
export function toSeverity(value: string): AlertSeverity {
  const map: Record<string, AlertSeverity> = {
    UnSpecified: 'unknown',
    Informational: 'informational',
    Low: 'low',
    Medium: 'medium',
    High: 'high',
  };
  return map[value] ?? 'unknown';
}

export function toAlertStatus(value: string): AlertStatus {
  const map: Record<string, AlertStatus> = { New: 'new', InProgress: 'inProgress', Resolved: 'resolved' };
  return map[value] ?? 'unknown';
}

/**
 * Defender's service names → the serviceSource members (security-alert.md): Defender for Office is
 * `microsoftDefenderForOffice365`, Cloud App Security `microsoftDefenderForCloudApps` (its new name).
 */
export function toServiceSource(value: string): ServiceSource {
  const map: Record<string, ServiceSource> = {
    MicrosoftDefenderForEndpoint: 'microsoftDefenderForEndpoint',
    MicrosoftDefenderATP: 'microsoftDefenderForEndpoint',
    MicrosoftDefenderForIdentity: 'microsoftDefenderForIdentity',
    AzureAtp: 'microsoftDefenderForIdentity',
    MicrosoftCloudAppSecurity: 'microsoftDefenderForCloudApps',
    MicrosoftDefenderForOffice: 'microsoftDefenderForOffice365',
    Microsoft365Defender: 'microsoft365Defender',
    AzureAdIdentityProtection: 'azureAdIdentityProtection',
    AppGovernance: 'microsoftAppGovernance',
    DataLossPrevention: 'dataLossPrevention',
  };
  return map[value] ?? 'unknown';
}

/**
 * Defender's detection source names (as its payloads write them) → the detectionSource members. Inferred
 * from the names: WindowsDefenderAv is `antivirus` (Graph's example alert from Defender for Endpoint's
 * antivirus), WindowsDefenderAtp (EDR) `microsoftDefenderForEndpoint`, OfficeATP, MCAS and AzureAtp the
 * products' own members.
 */
export function toDetectionSource(value: string): DetectionSource {
  const map: Record<string, DetectionSource> = {
    WindowsDefenderAtp: 'microsoftDefenderForEndpoint',
    WindowsDefenderAv: 'antivirus',
    WindowsDefenderSmartScreen: 'smartScreen',
    CustomerTI: 'customTi',
    CustomTi: 'customTi',
    AutomatedInvestigation: 'automatedInvestigation',
    ThreatExperts: 'microsoftThreatExperts',
    CustomDetection: 'customDetection',
    OfficeATP: 'microsoftDefenderForOffice365',
    AzureAtp: 'microsoftDefenderForIdentity',
    MCAS: 'cloudAppSecurity',
    MTP: 'microsoft365Defender',
    AadIdentityProtection: 'azureAdIdentityProtection',
    Manual: 'manual',
  };
  return map[value] ?? 'unknown';
}

/** Both pages list the same investigation states (Defender in PascalCase). */
export function toInvestigationState(value: string | null | undefined): InvestigationState | null {
  if (!value) return null;
  const candidate = lowerFirst(value);
  return (INVESTIGATION_STATES as readonly string[]).includes(candidate)
    ? (candidate as InvestigationState)
    : 'unknown';
}

function evidenceBase(
  entity: { evidenceCreationTime?: string; verdict?: string; remediationStatus?: string },
  fallbackTime: string,
): EvidenceBase {
  const verdicts: Record<string, EvidenceBase['verdict']> = {
    Malicious: 'malicious',
    Suspicious: 'suspicious',
    // Graph has no "clean" verdict; `noThreatsFound` is its counterpart (security-alertevidence.md). Inferred.
    Clean: 'noThreatsFound',
    Unknown: 'unknown',
  };
  const remediation: Record<string, EvidenceBase['remediationStatus']> = {
    None: 'none',
    Remediated: 'remediated',
    Prevented: 'prevented',
    Blocked: 'blocked',
    NotFound: 'notFound',
  };
  return {
    createdDateTime: entity.evidenceCreationTime ?? fallbackTime,
    detailedRoles: [],
    remediationStatus: remediation[entity.remediationStatus ?? 'None'] ?? 'none',
    remediationStatusDetails: null,
    roles: [],
    tags: [],
    verdict: verdicts[entity.verdict ?? 'Unknown'] ?? 'unknown',
  };
}

/** A Defender alert's device (mdatpDeviceId, aadDeviceId, …) → deviceEvidence (security-deviceevidence.md). */
export function toDeviceEvidence(device: DefenderDevice, alertCreated: string): DeviceEvidence {
  const health: Record<string, NonNullable<DeviceEvidence['healthStatus']>> = {
    Active: 'active',
    Inactive: 'inactive',
    ImpairedCommunication: 'impairedCommunication',
    NoSensorData: 'noSensorData',
    NoSensorDataImpairedCommunication: 'noSensorDataImpairedCommunication',
  };
  const av: Record<string, NonNullable<DeviceEvidence['defenderAvStatus']>> = {
    NotReporting: 'notReporting',
    Disabled: 'disabled',
    NotUpdated: 'notUpdated',
    Updated: 'updated',
    NotSupported: 'notSupported',
  };
  const onboarding: Record<string, NonNullable<DeviceEvidence['onboardingStatus']>> = {
    InsufficientInfo: 'insufficientInfo',
    Onboarded: 'onboarded',
    CanBeOnboarded: 'canBeOnboarded',
    Unsupported: 'unsupported',
  };
  const risk: Record<string, NonNullable<DeviceEvidence['riskScore']>> = {
    None: 'none',
    Informational: 'informational',
    Low: 'low',
    Medium: 'medium',
    High: 'high',
  };
  const vm = device.vmMetadata ?? null;
  return {
    '@odata.type': '#microsoft.graph.security.deviceEvidence',
    ...evidenceBase({}, alertCreated),
    tags: [...(device.tags ?? [])],
    azureAdDeviceId: device.aadDeviceId ?? null,
    defenderAvStatus: device.defenderAvStatus ? (av[device.defenderAvStatus] ?? 'unknown') : null,
    deviceDnsName: device.deviceDnsName ?? null,
    dnsDomain: null,
    firstSeenDateTime: device.firstSeen ?? null,
    healthStatus: device.healthStatus ? (health[device.healthStatus] ?? 'unknown') : null,
    hostName: null,
    ipInterfaces: [],
    lastExternalIpAddress: null,
    lastIpAddress: null,
    loggedOnUsers: [],
    mdeDeviceId: device.mdatpDeviceId ?? null,
    ntDomain: null,
    onboardingStatus: device.onboardingStatus ? (onboarding[device.onboardingStatus] ?? 'insufficientInfo') : null,
    osBuild: device.osBuild ?? null,
    osPlatform: device.osPlatform ?? null,
    rbacGroupId: device.rbacGroupId ?? null,
    rbacGroupName: device.rbacGroupName ?? null,
    riskScore: device.riskScore ? (risk[device.riskScore] ?? 'none') : null,
    version: device.version ?? null,
    vmMetadata: vm && {
      cloudProvider: vm.cloudProvider === 'Azure' ? 'azure' : 'unknown',
      resourceId: vm.resourceId ?? null,
      subscriptionId: vm.subscriptionId ?? null,
      vmId: vm.vmId ?? null,
    },
  };
}

function fileDetails(entity: DefenderEntity): FileDetails {
  return {
    fileName: entity.fileName,
    filePath: entity.filePath,
    filePublisher: null,
    fileSize: null,
    issuer: null,
    md5: null,
    sha1: entity.sha1,
    sha256: entity.sha256,
    sha256Ac: null,
    signer: null,
  };
}

function userAccount(entity: DefenderEntity): UserAccount {
  return {
    accountName: entity.accountName,
    activeDirectoryObjectGuid: null,
    azureAdUserId: entity.aadUserId,
    displayName: null,
    domainName: entity.domainName,
    userPrincipalName: entity.userPrincipalName,
    userSid: entity.userSid,
  };
}

/**
 * A Defender entity (`entityType` and its type's fields, the rest null) → the evidence type Graph has for
 * it, typed by `@odata.type`: User → userEvidence, Ip → ipEvidence, Url → urlEvidence, File → fileEvidence,
 * Process → processEvidence, MailBox → mailboxEvidence, MailMessage → analyzedMessageEvidence, MailCluster →
 * mailClusterEvidence, Registry → registryValueEvidence (registryKeyEvidence without a value), SecurityGroup
 * → securityGroupEvidence, CloudApplication → cloudApplicationEvidence. An entity type Graph has no
 * counterpart for is left out (undefined).
 */
export function toEvidence(entity: DefenderEntity): Evidence | undefined {
  const base = evidenceBase(entity, entity.evidenceCreationTime);
  switch (entity.entityType) {
    case 'User':
      return { '@odata.type': '#microsoft.graph.security.userEvidence', ...base, userAccount: userAccount(entity) };
    case 'Ip':
      return {
        '@odata.type': '#microsoft.graph.security.ipEvidence',
        ...base,
        countryLetterCode: null,
        ipAddress: entity.ipAddress,
      };
    case 'Url':
      return { '@odata.type': '#microsoft.graph.security.urlEvidence', ...base, url: entity.url };
    case 'File':
      return {
        '@odata.type': '#microsoft.graph.security.fileEvidence',
        ...base,
        detectionStatus: null,
        fileDetails: fileDetails(entity),
        mdeDeviceId: entity.deviceId,
      };
    case 'Process':
      return {
        '@odata.type': '#microsoft.graph.security.processEvidence',
        ...base,
        detectionStatus: null,
        imageFile: fileDetails(entity),
        mdeDeviceId: entity.deviceId,
        parentProcessCreationDateTime: entity.parentProcessCreationTime,
        parentProcessId: entity.parentProcessId,
        parentProcessImageFile: null,
        processCommandLine: entity.processCommandLine,
        processCreationDateTime: entity.processCreationTime,
        processId: entity.processId,
        userAccount: entity.accountName || entity.userSid ? userAccount(entity) : null,
      };
    case 'MailBox':
      return {
        '@odata.type': '#microsoft.graph.security.mailboxEvidence',
        ...base,
        displayName: entity.mailboxDisplayName,
        primaryAddress: entity.mailboxAddress,
        upn: entity.userPrincipalName,
        userAccount: entity.aadUserId || entity.userPrincipalName ? userAccount(entity) : null,
      };
    case 'MailMessage':
      return {
        '@odata.type': '#microsoft.graph.security.analyzedMessageEvidence',
        ...base,
        antiSpamDirection: null,
        attachmentsCount: null,
        deliveryAction: entity.deliveryAction,
        deliveryLocation: null,
        internetMessageId: null,
        language: null,
        networkMessageId: null,
        p1Sender: null,
        // Defender's `sender` is the From address a recipient sees: the P2 sender. Inferred.
        p2Sender: entity.sender
          ? { displayName: null, domainName: entity.sender.split('@')[1] ?? null, emailAddress: entity.sender }
          : null,
        receivedDateTime: null,
        recipientEmailAddress: entity.recipient,
        senderIp: null,
        subject: entity.subject,
        threatDetectionMethods: [],
        threats: [],
        urlCount: null,
        urls: [],
        urn: null,
      };
    case 'MailCluster':
      return {
        '@odata.type': '#microsoft.graph.security.mailClusterEvidence',
        ...base,
        clusterBy: entity.clusterBy,
        clusterByValue: null,
        emailCount: null,
        networkMessageIds: [],
        query: null,
        urn: null,
      };
    case 'Registry':
      if (entity.registryValue === null && entity.registryValueType === null)
        return {
          '@odata.type': '#microsoft.graph.security.registryKeyEvidence',
          ...base,
          registryHive: entity.registryHive,
          registryKey: entity.registryKey,
        };
      return {
        '@odata.type': '#microsoft.graph.security.registryValueEvidence',
        ...base,
        mdeDeviceId: entity.deviceId,
        registryHive: entity.registryHive,
        registryKey: entity.registryKey,
        registryValue: entity.registryValue,
        registryValueName: null,
        registryValueType: entity.registryValueType,
      };
    case 'SecurityGroup':
      return {
        '@odata.type': '#microsoft.graph.security.securityGroupEvidence',
        ...base,
        activeDirectoryObjectGuid: null,
        displayName: entity.securityGroupName,
        distinguishedName: null,
        friendlyName: null,
        securityGroupId: entity.securityGroupId,
        sid: null,
      };
    case 'CloudApplication':
      return {
        '@odata.type': '#microsoft.graph.security.cloudApplicationEvidence',
        ...base,
        appId: null,
        displayName: null,
        instanceId: null,
        instanceName: null,
        saasAppId: null,
      };
    default:
      return undefined;
  }
}
