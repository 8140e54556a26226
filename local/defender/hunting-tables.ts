import type { Alert, Entity, Incident } from './types.js';

/**
 * Advanced-hunting tables derived from a tenant's incidents, with the column names and types the
 * real schema uses (a subset of columns). Derived, not random: the same incidents give the same rows.
 */
export type ColumnType = 'DateTime' | 'String' | 'Int64';
export type Row = Record<string, string | number | null>;

export interface HuntingTable {
  schema: { Name: string; Type: ColumnType }[];
  rows: Row[];
}

type TableBuilder = (incidents: readonly Incident[]) => HuntingTable;

const ALERT_INFO_SCHEMA = columns({
  Timestamp: 'DateTime',
  AlertId: 'String',
  Title: 'String',
  Category: 'String',
  Severity: 'String',
  ServiceSource: 'String',
  DetectionSource: 'String',
  AttackTechniques: 'String',
});

const ALERT_EVIDENCE_SCHEMA = columns({
  Timestamp: 'DateTime',
  AlertId: 'String',
  Title: 'String',
  Categories: 'String',
  AttackTechniques: 'String',
  ServiceSource: 'String',
  DetectionSource: 'String',
  EntityType: 'String',
  EvidenceRole: 'String',
  FileName: 'String',
  FolderPath: 'String',
  SHA1: 'String',
  SHA256: 'String',
  ProcessCommandLine: 'String',
  RemoteIP: 'String',
  RemoteUrl: 'String',
  AccountName: 'String',
  AccountDomain: 'String',
  AccountSid: 'String',
  AccountObjectId: 'String',
  AccountUpn: 'String',
  EmailSubject: 'String',
  DeviceId: 'String',
  DeviceName: 'String',
});

const DEVICE_INFO_SCHEMA = columns({
  Timestamp: 'DateTime',
  DeviceId: 'String',
  DeviceName: 'String',
  OSPlatform: 'String',
  OSBuild: 'Int64',
  OSVersion: 'String',
  OSArchitecture: 'String',
  MachineGroup: 'String',
  OnboardingStatus: 'String',
  SensorHealthState: 'String',
  ExposureLevel: 'String',
  AadDeviceId: 'String',
});

const DEVICE_LOGON_SCHEMA = columns({
  Timestamp: 'DateTime',
  DeviceId: 'String',
  DeviceName: 'String',
  ActionType: 'String',
  LogonType: 'String',
  AccountDomain: 'String',
  AccountName: 'String',
  AccountSid: 'String',
  RemoteIP: 'String',
  ReportId: 'Int64',
});

const EVIDENCE_ENTITY_TYPES: Partial<Record<Entity['entityType'], string>> = {
  MailBox: 'Mailbox',
  Registry: 'RegistryValue',
};

export const HUNTING_TABLES: Record<string, TableBuilder> = {
  AlertInfo: (incidents) => ({
    schema: ALERT_INFO_SCHEMA,
    rows: alertsOf(incidents).map((alert) => ({
      Timestamp: alert.creationTime,
      AlertId: alert.alertId,
      Title: alert.title,
      Category: alert.category,
      Severity: alert.severity,
      ServiceSource: serviceSourceName(alert),
      DetectionSource: alert.detectionSource,
      AttackTechniques: JSON.stringify(alert.mitreTechniques ?? []),
    })),
  }),

  AlertEvidence: (incidents) => ({
    schema: ALERT_EVIDENCE_SCHEMA,
    rows: alertsOf(incidents).flatMap((alert) => {
      const base = {
        Timestamp: alert.creationTime,
        AlertId: alert.alertId,
        Title: alert.title,
        Categories: JSON.stringify([alert.category]),
        AttackTechniques: JSON.stringify(alert.mitreTechniques ?? []),
        ServiceSource: serviceSourceName(alert),
        DetectionSource: alert.detectionSource,
      };
      const deviceRows = (alert.devices ?? []).map((device) =>
        fill(ALERT_EVIDENCE_SCHEMA, {
          ...base,
          EntityType: 'Machine',
          EvidenceRole: 'Impacted',
          DeviceId: device.mdatpDeviceId,
          DeviceName: device.deviceDnsName,
        }),
      );
      const entityRows = (alert.entities ?? []).map((entity) =>
        fill(ALERT_EVIDENCE_SCHEMA, {
          ...base,
          EntityType: EVIDENCE_ENTITY_TYPES[entity.entityType] ?? entity.entityType,
          EvidenceRole: entity.entityType === 'User' || entity.entityType === 'MailBox' ? 'Impacted' : 'Related',
          FileName: entity.fileName,
          FolderPath: entity.filePath,
          SHA1: entity.sha1,
          SHA256: entity.sha256,
          ProcessCommandLine: entity.processCommandLine,
          RemoteIP: entity.ipAddress,
          RemoteUrl: entity.url,
          AccountName: entity.accountName,
          AccountDomain: entity.domainName,
          AccountSid: entity.userSid,
          AccountObjectId: entity.aadUserId,
          AccountUpn: entity.userPrincipalName ?? entity.mailboxAddress,
          EmailSubject: entity.subject,
          DeviceId: entity.deviceId,
        }),
      );
      return [...deviceRows, ...entityRows];
    }),
  }),

  DeviceInfo: (incidents) => {
    // One row per device: its latest appearance in an alert.
    const latest = new Map<string, Row>();
    for (const alert of alertsOf(incidents)) {
      for (const device of alert.devices ?? []) {
        const previous = latest.get(device.mdatpDeviceId);
        if (previous && String(previous.Timestamp) >= alert.lastUpdatedTime) continue;
        latest.set(device.mdatpDeviceId, {
          Timestamp: alert.lastUpdatedTime,
          DeviceId: device.mdatpDeviceId,
          DeviceName: device.deviceDnsName,
          OSPlatform: device.osPlatform,
          OSBuild: device.osBuild,
          OSVersion: device.version,
          OSArchitecture: device.osProcessor === 'x64' ? '64-bit' : device.osProcessor,
          MachineGroup: device.rbacGroupName,
          OnboardingStatus: device.onboardingStatus ?? 'Onboarded',
          SensorHealthState: device.healthStatus,
          ExposureLevel: device.riskScore,
          AadDeviceId: device.aadDeviceId,
        });
      }
    }
    return { schema: DEVICE_INFO_SCHEMA, rows: [...latest.values()] };
  },

  DeviceLogonEvents: (incidents) => ({
    schema: DEVICE_LOGON_SCHEMA,
    rows: alertsOf(incidents).flatMap((alert) => {
      const users = (alert.entities ?? []).filter((entity) => entity.entityType === 'User');
      const remoteIp = (alert.entities ?? []).find((entity) => entity.entityType === 'Ip')?.ipAddress ?? null;
      return (alert.devices ?? []).flatMap((device, deviceIndex) =>
        users.map((user, userIndex) => ({
          Timestamp: alert.firstActivity,
          DeviceId: device.mdatpDeviceId,
          DeviceName: device.deviceDnsName,
          ActionType: /brute force/i.test(alert.title) ? 'LogonFailed' : 'LogonSuccess',
          LogonType: remoteIp ? 'Network' : 'Interactive',
          AccountDomain: user.domainName,
          AccountName: user.accountName,
          AccountSid: user.userSid,
          RemoteIP: remoteIp,
          ReportId: alert.incidentId * 1000 + deviceIndex * 10 + userIndex,
        })),
      );
    }),
  }),
};

function alertsOf(incidents: readonly Incident[]): Alert[] {
  return incidents.flatMap((incident) => incident.alerts ?? []);
}

/** Advanced hunting spells service sources as product names. */
function serviceSourceName(alert: Alert): string {
  const names: Record<string, string> = {
    MicrosoftDefenderForEndpoint: 'Microsoft Defender for Endpoint',
    MicrosoftDefenderForOffice: 'Microsoft Defender for Office 365',
    MicrosoftCloudAppSecurity: 'Microsoft Defender for Cloud Apps',
    AzureAdIdentityProtection: 'Microsoft Entra ID Protection',
    MicrosoftDefenderForIdentity: 'Microsoft Defender for Identity',
  };
  return names[alert.serviceSource] ?? alert.serviceSource;
}

function columns(types: Record<string, ColumnType>): HuntingTable['schema'] {
  return Object.entries(types).map(([Name, Type]) => ({ Name, Type }));
}

/** A row with every schema column, null where the source has no value. */
function fill(schema: HuntingTable['schema'], values: Record<string, string | number | null | undefined>): Row {
  return Object.fromEntries(schema.map(({ Name }) => [Name, values[Name] ?? null]));
}
