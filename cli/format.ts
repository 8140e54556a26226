import { describeCredential, type StepName, type StepStatus, type TenantCheck } from '../shared/tenants/doctor.js';
import type { ConsentInstructions, TenantView } from '../shared/tenants/tenant-admin.js';

/** Plain-text tables and messages the command-line tools print. */

/** Columns padded to their widest cell; the last column (often a long cause) is neither padded nor underlined past its header. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w, i) => '-'.repeat(i === widths.length - 1 ? headers[i]!.length : w));
  return [line(headers), line(rule), ...rows.map(line)].join('\n');
}

export function formatTenantList(tenants: TenantView[]): string {
  if (tenants.length === 0) return 'No tenants registered. Add one with: npm run tenants -- add --help';
  const rows = tenants.map((t) => [
    t.displayName,
    t.tenantId,
    t.context,
    t.source,
    t.clientId,
    describeCredential(t.credential),
    t.enabled ? 'yes' : 'no',
    t.lastPoll.at ? `${t.lastPoll.at.replace('T', ' ').slice(0, 19)}Z ${t.lastPoll.outcome ?? ''}`.trim() : 'never',
    String(t.lastPoll.eventsEnqueued),
  ]);
  const table = formatTable(
    ['NAME', 'TENANT ID', 'CONTEXT', 'SOURCE', 'CLIENT ID', 'CREDENTIAL', 'ENABLED', 'LAST POLL', 'EVENTS'],
    rows,
  );
  const errors = tenants
    .filter((t) => t.lastPoll.error)
    .map((t) => `  ${t.displayName}: last poll failed: ${t.lastPoll.error}`);
  return errors.length ? `${table}\n\n${errors.join('\n')}` : table;
}

const MARKS: Record<StepStatus, string> = { ok: 'ok', failed: 'FAILED', skipped: '-' };
const STEP_ORDER: StepName[] = ['secret', 'token', 'permissions', 'api'];

export function formatDoctorReport(checks: TenantCheck[]): string {
  if (checks.length === 0) return 'No tenants registered: nothing to check.';
  const rows = checks.map((c) => [
    c.enabled ? c.displayName : `${c.displayName} (disabled)`,
    c.tenantId,
    c.context,
    c.source,
    ...STEP_ORDER.map((name) => MARKS[c.steps.find((s) => s.name === name)?.status ?? 'skipped']),
    c.ok ? (c.token ? `roles ${c.token.roles.join(', ')}` : 'ok') : (c.cause ?? 'failed'),
  ]);
  const out = [
    formatTable(['TENANT', 'TENANT ID', 'CONTEXT', 'SOURCE', 'SECRET', 'TOKEN', 'PERMISSIONS', 'API', 'RESULT'], rows),
  ];
  const warnings = checks.flatMap((c) => c.warnings.map((w) => `  warning: ${c.displayName}: ${w}`));
  if (warnings.length) out.push('', ...warnings);
  const failed = checks.filter((c) => !c.ok).length;
  out.push('', `${checks.length - failed} tenant(s) ok, ${failed} failed`);
  return out.join('\n');
}

export function formatConsentInstructions(c: ConsentInstructions): string {
  return [
    `Admin-consent link for ${c.displayName} (${c.tenantId}), app ${c.clientId}:`,
    '',
    `  ${c.consentLink}`,
    '',
    ...c.steps.map((step, i) => `${i + 1}. ${step}`),
  ].join('\n');
}
