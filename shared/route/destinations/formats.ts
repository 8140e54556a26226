import { alertsOf, recordsOf, textOf } from '../../sources/defender/incident-types.js';
import { incidentViewOf } from '../../sources/incident-api.js';
import type { RoutedMessage } from './types.js';

/**
 * Teams and Slack renderings of a routed incident: a title (severity, incident name, tenant) and the
 * few facts an analyst triages on, with a button to the incident in the Defender portal. Incident
 * text comes from attackers' artefacts as much as from Defender, so it is shown as plain text.
 */

/** At most this many devices or users are listed by name. */
const FEW = 5;

export interface IncidentFacts {
  title: string;
  severity: string;
  facts: { name: string; value: string }[];
  portalUrl: string;
}

function few(values: string[]): string {
  const unique = [...new Set(values)];
  if (unique.length === 0) return 'none';
  const shown = unique.slice(0, FEW).join(', ');
  return unique.length > FEW ? `${shown} and ${unique.length - FEW} more` : shown;
}

function devicesOf(incident: Record<string, unknown>): string[] {
  return alertsOf(incident).flatMap((alert) =>
    recordsOf(alert.devices).flatMap((device) => {
      const name = textOf(device.deviceDnsName) ?? textOf(device.mdatpDeviceId);
      return name ? [name] : [];
    }),
  );
}

function usersOf(incident: Record<string, unknown>): string[] {
  return alertsOf(incident).flatMap((alert) =>
    recordsOf(alert.entities).flatMap((entity) => {
      if (textOf(entity.entityType)?.toLowerCase() !== 'user') return [];
      const domain = textOf(entity.domainName);
      const account = textOf(entity.accountName);
      const name = textOf(entity.userPrincipalName) ?? (account && domain ? `${domain}\\${account}` : account);
      return name ? [name] : [];
    }),
  );
}

/** The title and facts both formats show. */
export function incidentFacts(message: RoutedMessage): IncidentFacts {
  const { enrichment } = message;
  // A Graph incident is read in the Defender shape, so both sources render alike.
  const incident = incidentViewOf(message, message.incident);
  const severity = textOf(incident.severity) ?? 'UnSpecified';
  const name = textOf(incident.incidentName) ?? `Incident ${message.incidentId}`;
  const tenant = enrichment.tenantDisplayName ?? message.tenantId;
  const alertCount = typeof enrichment.alertCount === 'number' ? enrichment.alertCount : alertsOf(incident).length;
  const techniques = enrichment.mitre?.techniques ?? [];
  return {
    title: `[${severity}] ${name} (${tenant})`,
    severity,
    facts: [
      { name: 'Priority', value: `${enrichment.priority} / 100` },
      { name: 'Status', value: textOf(incident.status) ?? 'unknown' },
      { name: 'Alerts', value: String(alertCount) },
      { name: 'MITRE techniques', value: few(techniques) },
      { name: 'Devices', value: few(devicesOf(incident)) },
      { name: 'Users', value: few(usersOf(incident)) },
      { name: 'Incident', value: `${message.incidentId} (route ${message.route.name})` },
    ],
    portalUrl:
      enrichment.portalUrl ??
      `https://security.microsoft.com/incidents/${message.incidentId}?tid=${encodeURIComponent(message.tenantId)}`,
  };
}

/** Adaptive Card markdown would turn `[text](url)` in an alert title into a link: escape it. */
function plain(text: string): string {
  return text.replace(/[\\[\]()*_~`#>]/g, (c) => `\\${c}`);
}

const TEAMS_COLOR: Record<string, string> = { High: 'attention', Medium: 'warning', Low: 'accent' };

/**
 * A Teams message with an Adaptive Card, accepted by Teams incoming webhooks and by Workflows
 * ("Post to a channel when a webhook request is received").
 */
export function teamsPayload(message: RoutedMessage): Record<string, unknown> {
  const f = incidentFacts(message);
  return {
    type: 'message',
    summary: f.title,
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.4',
          msteams: { width: 'Full' },
          body: [
            {
              type: 'TextBlock',
              text: plain(f.title),
              weight: 'Bolder',
              size: 'Medium',
              wrap: true,
              color: TEAMS_COLOR[f.severity] ?? 'default',
            },
            { type: 'FactSet', facts: f.facts.map((fact) => ({ title: fact.name, value: plain(fact.value) })) },
          ],
          actions: [{ type: 'Action.OpenUrl', title: 'Open in Microsoft Defender', url: f.portalUrl }],
        },
      },
    ],
  };
}

/** A Slack incoming-webhook message: `text` for notifications, Block Kit blocks for the channel. */
export function slackPayload(message: RoutedMessage): Record<string, unknown> {
  const f = incidentFacts(message);
  const plainText = (text: string) => ({ type: 'plain_text', text: text.slice(0, 2000), emoji: false });
  return {
    text: f.title,
    blocks: [
      { type: 'header', text: plainText(f.title.slice(0, 150)) },
      { type: 'section', fields: f.facts.map((fact) => plainText(`${fact.name}: ${fact.value}`)) },
      {
        type: 'actions',
        elements: [
          {
            type: 'button',
            text: plainText('Open in Microsoft Defender'),
            url: f.portalUrl,
            action_id: 'open-incident',
          },
        ],
      },
    ],
  };
}
