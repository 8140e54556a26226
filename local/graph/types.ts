/**
 * `microsoft.graph.security.incident` and `microsoft.graph.security.alert` (v1.0), property for property.
 * Sources: microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/resources/security-incident.md,
 * security-alert.md, security-alertcomment.md, security-alertevidence.md and each *evidence.md; and, where the
 * pages lag the service, the v1.0 schema itself (microsoftgraph/msgraph-metadata clean_v10_metadata/
 * cleanMetadata.xml, namespace microsoft.graph.security), which adds lastModifiedBy, priorityScore,
 * resolvingComment and summary to the incident and spells the enum members as listed below.
 * Enums are written as their lower-camel member names; members after `unknownFutureValue` are "evolvable":
 * Graph sends them only to a client that asks with `Prefer: include-unknown-enum-members`.
 */

export const INCIDENT_STATUSES = [
  'active',
  'resolved',
  'inProgress',
  'redirected',
  'unknownFutureValue',
  'awaitingAction',
] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

export const ALERT_SEVERITIES = ['unknown', 'informational', 'low', 'medium', 'high', 'unknownFutureValue'] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

export const ALERT_CLASSIFICATIONS = [
  'unknown',
  'falsePositive',
  'truePositive',
  'informationalExpectedActivity',
  'unknownFutureValue',
] as const;
export type AlertClassification = (typeof ALERT_CLASSIFICATIONS)[number];

/** The schema's members (the resource page still lists older names: compromisedUser, clean, insufficientData). */
export const ALERT_DETERMINATIONS = [
  'unknown',
  'apt',
  'malware',
  'securityPersonnel',
  'securityTesting',
  'unwantedSoftware',
  'other',
  'multiStagedAttack',
  'compromisedAccount',
  'phishing',
  'maliciousUserActivity',
  'notMalicious',
  'notEnoughDataToValidate',
  'confirmedActivity',
  'lineOfBusinessApplication',
  'unknownFutureValue',
] as const;
export type AlertDetermination = (typeof ALERT_DETERMINATIONS)[number];

export const ALERT_STATUSES = ['unknown', 'new', 'inProgress', 'resolved', 'unknownFutureValue'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

export const SERVICE_SOURCES = [
  'unknown',
  'microsoftDefenderForEndpoint',
  'microsoftDefenderForIdentity',
  'microsoftDefenderForCloudApps',
  'microsoftDefenderForOffice365',
  'microsoft365Defender',
  'azureAdIdentityProtection',
  'microsoftAppGovernance',
  'dataLossPrevention',
  'unknownFutureValue',
  'microsoftDefenderForCloud',
  'microsoftSentinel',
  'microsoftInsiderRiskManagement',
  'microsoftThreatIntelligence',
  'microsoftSecurityForAI',
] as const;
export type ServiceSource = (typeof SERVICE_SOURCES)[number];

/** The members a Defender incident's alerts can map to (the schema has many more after unknownFutureValue). */
export const DETECTION_SOURCES = [
  'unknown',
  'microsoftDefenderForEndpoint',
  'antivirus',
  'smartScreen',
  'customTi',
  'microsoftDefenderForOffice365',
  'automatedInvestigation',
  'microsoftThreatExperts',
  'customDetection',
  'microsoftDefenderForIdentity',
  'cloudAppSecurity',
  'microsoft365Defender',
  'azureAdIdentityProtection',
  'manual',
  'microsoftDataLossPrevention',
  'appGovernancePolicy',
  'appGovernanceDetection',
  'unknownFutureValue',
] as const;
export type DetectionSource = (typeof DETECTION_SOURCES)[number];

export const INVESTIGATION_STATES = [
  'unknown',
  'terminated',
  'successfullyRemediated',
  'benign',
  'failed',
  'partiallyRemediated',
  'running',
  'pendingApproval',
  'pendingResource',
  'queued',
  'innerFailure',
  'preexistingAlert',
  'unsupportedOs',
  'unsupportedAlertType',
  'suppressedAlert',
  'partiallyInvestigated',
  'terminatedByUser',
  'terminatedBySystem',
  'unknownFutureValue',
] as const;
export type InvestigationState = (typeof INVESTIGATION_STATES)[number];

export type EvidenceVerdict = 'unknown' | 'suspicious' | 'malicious' | 'noThreatsFound' | 'unknownFutureValue';
export type EvidenceRemediationStatus =
  | 'none'
  | 'remediated'
  | 'prevented'
  | 'blocked'
  | 'notFound'
  | 'unknownFutureValue'
  | 'active'
  | 'pendingApproval'
  | 'declined'
  | 'unremediated'
  | 'running'
  | 'partiallyRemediated';
export type DeviceHealthStatus =
  | 'active'
  | 'inactive'
  | 'impairedCommunication'
  | 'noSensorData'
  | 'noSensorDataImpairedCommunication'
  | 'unknown'
  | 'unknownFutureValue';
export type DeviceRiskScore = 'none' | 'informational' | 'low' | 'medium' | 'high' | 'unknownFutureValue';
export type OnboardingStatus =
  'insufficientInfo' | 'onboarded' | 'canBeOnboarded' | 'unsupported' | 'unknownFutureValue';
export type DefenderAvStatus =
  'notReporting' | 'disabled' | 'notUpdated' | 'updated' | 'unknown' | 'notSupported' | 'unknownFutureValue';
export type DetectionStatus = 'detected' | 'blocked' | 'prevented' | 'unknownFutureValue';

/**
 * The evolvable members of each enum the stand-in writes: the ones after `unknownFutureValue`, sent as
 * `unknownFutureValue` unless the request says `Prefer: include-unknown-enum-members`
 * (security-incident.md, "incidentStatus values"; Graph best practices, "Handling future members in
 * evolvable enumerations").
 */
export const EVOLVABLE_MEMBERS = {
  incidentStatus: ['awaitingAction'],
  serviceSource: [
    'microsoftDefenderForCloud',
    'microsoftSentinel',
    'microsoftInsiderRiskManagement',
    'microsoftThreatIntelligence',
    'microsoftSecurityForAI',
  ],
  evidenceRemediationStatus: [
    'active',
    'pendingApproval',
    'declined',
    'unremediated',
    'running',
    'partiallyRemediated',
  ],
} as const;

/** `microsoft.graph.security.alertComment`: the schema's and the comment page's properties. */
export interface AlertComment {
  comment: string;
  createdByDisplayName: string;
  createdDateTime: string;
}

export interface FileDetails {
  fileName: string | null;
  filePath: string | null;
  filePublisher: string | null;
  fileSize: number | null;
  issuer: string | null;
  md5: string | null;
  sha1: string | null;
  sha256: string | null;
  sha256Ac: string | null;
  signer: string | null;
}

export interface UserAccount {
  accountName: string | null;
  activeDirectoryObjectGuid: string | null;
  azureAdUserId: string | null;
  displayName: string | null;
  domainName: string | null;
  userPrincipalName: string | null;
  userSid: string | null;
}

export interface EmailSender {
  displayName: string | null;
  domainName: string | null;
  emailAddress: string | null;
}

export interface VmMetadata {
  cloudProvider: 'unknown' | 'azure' | 'unknownFutureValue';
  resourceId: string | null;
  subscriptionId: string | null;
  vmId: string | null;
}

/** `microsoft.graph.security.alertEvidence`, the base every evidence type shares. */
export interface EvidenceBase {
  createdDateTime: string;
  detailedRoles: string[];
  remediationStatus: EvidenceRemediationStatus;
  remediationStatusDetails: string | null;
  roles: string[];
  tags: string[];
  verdict: EvidenceVerdict;
}

export type DeviceEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.deviceEvidence';
  azureAdDeviceId: string | null;
  defenderAvStatus: DefenderAvStatus | null;
  deviceDnsName: string | null;
  dnsDomain: string | null;
  firstSeenDateTime: string | null;
  healthStatus: DeviceHealthStatus | null;
  hostName: string | null;
  ipInterfaces: string[];
  lastExternalIpAddress: string | null;
  lastIpAddress: string | null;
  loggedOnUsers: { accountName: string | null; domainName: string | null }[];
  mdeDeviceId: string | null;
  ntDomain: string | null;
  onboardingStatus: OnboardingStatus | null;
  osBuild: number | null;
  osPlatform: string | null;
  rbacGroupId: number | null;
  rbacGroupName: string | null;
  riskScore: DeviceRiskScore | null;
  version: string | null;
  vmMetadata: VmMetadata | null;
};

export type UserEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.userEvidence';
  userAccount: UserAccount;
};

export type IpEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.ipEvidence';
  countryLetterCode: string | null;
  ipAddress: string | null;
};

export type UrlEvidence = EvidenceBase & { '@odata.type': '#microsoft.graph.security.urlEvidence'; url: string | null };

export type FileEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.fileEvidence';
  detectionStatus: DetectionStatus | null;
  fileDetails: FileDetails;
  mdeDeviceId: string | null;
};

export type ProcessEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.processEvidence';
  detectionStatus: DetectionStatus | null;
  imageFile: FileDetails;
  mdeDeviceId: string | null;
  parentProcessCreationDateTime: string | null;
  parentProcessId: number | null;
  parentProcessImageFile: FileDetails | null;
  processCommandLine: string | null;
  processCreationDateTime: string | null;
  processId: number | null;
  userAccount: UserAccount | null;
};

export type MailboxEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.mailboxEvidence';
  displayName: string | null;
  primaryAddress: string | null;
  upn: string | null;
  userAccount: UserAccount | null;
};

export type AnalyzedMessageEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.analyzedMessageEvidence';
  antiSpamDirection: string | null;
  attachmentsCount: number | null;
  deliveryAction: string | null;
  deliveryLocation: string | null;
  internetMessageId: string | null;
  language: string | null;
  networkMessageId: string | null;
  p1Sender: EmailSender | null;
  p2Sender: EmailSender | null;
  receivedDateTime: string | null;
  recipientEmailAddress: string | null;
  senderIp: string | null;
  subject: string | null;
  threatDetectionMethods: string[];
  threats: string[];
  urlCount: number | null;
  urls: string[];
  urn: string | null;
};

export type MailClusterEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.mailClusterEvidence';
  clusterBy: string | null;
  clusterByValue: string | null;
  emailCount: number | null;
  networkMessageIds: string[];
  query: string | null;
  urn: string | null;
};

export type RegistryValueEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.registryValueEvidence';
  mdeDeviceId: string | null;
  registryHive: string | null;
  registryKey: string | null;
  registryValue: string | null;
  registryValueName: string | null;
  registryValueType: string | null;
};

export type RegistryKeyEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.registryKeyEvidence';
  registryHive: string | null;
  registryKey: string | null;
};

export type SecurityGroupEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.securityGroupEvidence';
  activeDirectoryObjectGuid: string | null;
  displayName: string | null;
  distinguishedName: string | null;
  friendlyName: string | null;
  securityGroupId: string | null;
  sid: string | null;
};

export type CloudApplicationEvidence = EvidenceBase & {
  '@odata.type': '#microsoft.graph.security.cloudApplicationEvidence';
  appId: number | null;
  displayName: string | null;
  instanceId: number | null;
  instanceName: string | null;
  saasAppId: number | null;
};

export type Evidence =
  | DeviceEvidence
  | UserEvidence
  | IpEvidence
  | UrlEvidence
  | FileEvidence
  | ProcessEvidence
  | MailboxEvidence
  | AnalyzedMessageEvidence
  | MailClusterEvidence
  | RegistryKeyEvidence
  | RegistryValueEvidence
  | SecurityGroupEvidence
  | CloudApplicationEvidence;

export interface GraphAlert {
  id: string;
  actorDisplayName: string | null;
  alertPolicyId: string | null;
  alertWebUrl: string;
  assignedTo: string | null;
  category: string;
  classification: AlertClassification | null;
  comments: AlertComment[];
  createdDateTime: string;
  description: string;
  detectionSource: DetectionSource;
  detectorId: string | null;
  determination: AlertDetermination | null;
  evidence: Evidence[];
  firstActivityDateTime: string | null;
  incidentId: string;
  incidentWebUrl: string;
  investigationState: InvestigationState | null;
  lastActivityDateTime: string | null;
  lastUpdateDateTime: string;
  mitreTechniques: string[];
  productName: string | null;
  providerAlertId: string;
  recommendedActions: string | null;
  resolvedDateTime: string | null;
  serviceSource: ServiceSource;
  severity: AlertSeverity;
  status: AlertStatus;
  systemTags: string[];
  tenantId: string;
  threatDisplayName: string | null;
  threatFamilyName: string | null;
  title: string;
}

/** `microsoft.graph.security.incident` with its `alerts` navigation (sent only with `$expand=alerts`). */
export interface GraphIncident {
  id: string;
  incidentWebUrl: string;
  redirectIncidentId: string | null;
  tenantId: string;
  displayName: string;
  createdDateTime: string;
  lastUpdateDateTime: string;
  assignedTo: string | null;
  classification: AlertClassification;
  determination: AlertDetermination;
  status: IncidentStatus;
  severity: AlertSeverity;
  customTags: string[];
  systemTags: string[];
  description: string | null;
  summary: string | null;
  resolvingComment: string | null;
  lastModifiedBy: string | null;
  priorityScore: number | null;
  comments: AlertComment[];
  alerts: GraphAlert[];
}

/** The incident's structural properties (`$select` names, `$filter` candidates), in the schema's order. */
export const INCIDENT_PROPERTIES = [
  'assignedTo',
  'classification',
  'comments',
  'createdDateTime',
  'customTags',
  'description',
  'determination',
  'displayName',
  'id',
  'incidentWebUrl',
  'lastModifiedBy',
  'lastUpdateDateTime',
  'priorityScore',
  'redirectIncidentId',
  'resolvingComment',
  'severity',
  'status',
  'summary',
  'systemTags',
  'tenantId',
] as const;
export type IncidentProperty = (typeof INCIDENT_PROPERTIES)[number];
