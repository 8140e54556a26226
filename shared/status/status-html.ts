import type { BudgetUsage } from '../sources/budget-usage.js';
import type { DeadLetterRow, QueueDepth, StatusReport, TenantRow } from './status-report.js';

/**
 * The status page: server-rendered HTML that reads without JavaScript and reloads itself (a meta
 * refresh). Every value is escaped: tenant names and dead-letter reasons come from outside.
 */
export const REFRESH_SECONDS = 30;

export interface ReplayNotice {
  moved: number;
  skipped: number;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

/** Markup already escaped. */
class Markup {
  constructor(readonly text: string) {}
}

/**
 * Tagged template: interpolated values are escaped, nested `Markup` is kept as it is. (Not named
 * `html`, which prettier would reformat as HTML, whitespace and all.)
 */
function markup(parts: TemplateStringsArray, ...values: unknown[]): Markup {
  let out = parts[0]!;
  values.forEach((value, i) => {
    out += render(value) + parts[i + 1]!;
  });
  return new Markup(out);
}
function render(value: unknown): string {
  if (value instanceof Markup) return value.text;
  if (Array.isArray(value)) return value.map(render).join('\n');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(String(value));
}

const STYLE = new Markup(`
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; }
table { border-collapse: collapse; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #0a6b2d; } .bad { color: #b00020; font-weight: 600; } .warn { color: #8a5300; } .muted { color: #666; }
.notice { background: #e8f4ea; padding: .5rem .8rem; border-left: 4px solid #0a6b2d; }
.problem { background: #fdecea; padding: .5rem .8rem; border-left: 4px solid #b00020; }
code { font-size: .9em; } time { white-space: nowrap; } form { margin-top: .8rem; }
`);

export function renderStatusPage(report: StatusReport, notice?: ReplayNotice): string {
  const failing = report.tenants.filter((t) => t.enabled && isFailure(t.lastOutcome)).length;
  const behind = report.tenants.filter((t) => t.behind).length;
  const interval = report.pollIntervalSeconds
    ? markup` Tenants poll every ${duration(report.pollIntervalSeconds)}.`
    : '';
  const replayed = notice
    ? markup`<p class="notice" role="status" id="replay-notice">Replay moved ${notice.moved} event(s) back onto <code>incidents</code>; ${notice.skipped} left in place.</p>`
    : '';
  return markup`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="${REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>defender-relay status</title>
<style>${STYLE}</style>
</head>
<body>
<h1>defender-relay status</h1>
<p class="muted">As of <time datetime="${report.generatedAt}">${report.generatedAt}</time>; this page reloads every ${REFRESH_SECONDS} s.${interval}</p>
${replayed}
${report.problems.map((p) => markup`<p class="problem">Could not read ${p}</p>`)}
<p id="summary">${report.tenants.length} tenant(s): <span class="${failing ? 'bad' : 'ok'}">${failing} failing</span>, <span class="${behind ? 'bad' : 'ok'}">${behind} behind</span>.</p>
${tenantsTable(report.tenants)}
${queuesTable(report.queues)}
${deadLettersSection(report.deadLetters, report.queues)}
</body>
</html>
`.text;
}

const isFailure = (outcome?: string) => outcome === 'failed' || outcome === 'retrying';

function tenantsTable(tenants: TenantRow[]): Markup {
  if (tenants.length === 0)
    return markup`<h2>Tenants</h2><p>No tenant is registered yet (<code>npm run tenants -- add</code>).</p>`;
  return markup`<h2>Tenants</h2>
<table id="tenants">
<thead><tr><th>Tenant</th><th>Context</th><th>Last poll</th><th>Outcome</th><th>Checkpoint lag</th><th>Events, 24 h</th><th>Events, all</th><th>Budget used (minute, hour)</th><th>Last failure</th></tr></thead>
<tbody>
${tenants.map(tenantRow)}
</tbody>
</table>`;
}

function tenantRow(t: TenantRow): Markup {
  const disabled = t.enabled ? '' : markup` <span class="warn">(disabled)</span>`;
  const lastPoll = t.lastPollAt
    ? markup`<time datetime="${t.lastPollAt}">${t.lastPollAt}</time>`
    : markup`<span class="muted">never</span>`;
  const error = t.lastError ? markup`<br><span class="muted">${t.lastError}</span>` : '';
  const lag = t.lagSeconds === undefined ? '' : duration(t.lagSeconds);
  const lastFailure = t.lastFailureAt
    ? markup`<time datetime="${t.lastFailureAt}">${t.lastFailureAt}</time><br><span class="muted">${t.lastFailure ?? ''}</span>`
    : markup`<span class="muted">none</span>`;
  return markup`<tr data-tenant-id="${t.tenantId}">
<td>${t.displayName}<br><code class="muted">${t.tenantId}</code></td>
<td>${t.context}${disabled}</td>
<td>${lastPoll}</td>
<td class="${isFailure(t.lastOutcome) ? 'bad' : 'ok'}" data-field="outcome">${t.lastOutcome ?? ''}${error}</td>
<td class="n${t.behind ? ' bad' : ''}" data-lag-seconds="${t.lagSeconds ?? ''}">${lag}${t.behind ? ' (behind)' : ''}</td>
<td class="n" data-field="events-24h">${t.eventsLast24h}</td>
<td class="n" data-field="events-all">${t.eventsEnqueued}</td>
<td class="n" data-field="budget">${budget(t.budget)}</td>
<td data-field="last-failure">${lastFailure}</td>
</tr>`;
}

function budget(usage?: BudgetUsage): Markup {
  if (!usage) return markup`<span class="muted">no calls</span>`;
  // Held after a 429: the API, and until when (UTC), as the shared budget holds every instance.
  const held = usage.held.map(
    (h) => markup`<br><span class="bad" data-field="held">held: ${h.api} until ${h.until.slice(11, 19)}Z</span>`,
  );
  return markup`${usage.lastMinute}/${usage.limits.perMinute}, ${usage.lastHour}/${usage.limits.perHour}${held}`;
}

function queuesTable(queues: QueueDepth[]): Markup {
  const row = (q: QueueDepth) => {
    const failed = /-(poison|deadletter)$/.test(q.name) && (q.messages ?? 0) > 0;
    return markup`<tr data-queue="${q.name}"><td><code>${q.name}</code></td><td class="n${failed ? ' bad' : ''}">${q.messages ?? '?'}</td></tr>`;
  };
  return markup`<h2>Queues</h2>
<table id="queues">
<thead><tr><th>Queue</th><th>Messages</th></tr></thead>
<tbody>
${queues.map(row)}
</tbody>
</table>`;
}

function deadLettersSection(deadLetters: DeadLetterRow[], queues: QueueDepth[]): Markup {
  const waiting = (name: string) => queues.find((q) => q.name === name)?.messages ?? 0;
  const replayable = waiting('incidents-deadletter') + waiting('incidents-poison');
  // No action attribute: the form posts to the page's own address, key included, which the page never prints.
  const form = markup`<form method="post" id="replay">
<input type="hidden" name="action" value="replay">
<label>Replay <select name="source"><option value="all">dead-lettered and poisoned</option><option value="deadletter">dead-lettered only</option><option value="poison">poisoned only</option></select> incident events</label>
<button type="submit"${replayable ? '' : new Markup(' disabled')}>Replay</button>
</form>`;
  if (deadLetters.length === 0)
    return markup`<h2>Dead letters</h2>
<p>None waiting in <code>incidents-deadletter</code>.</p>
${form}`;
  const row = (d: DeadLetterRow) =>
    markup`<tr><td>${d.failedAt ? markup`<time datetime="${d.failedAt}">${d.failedAt}</time>` : ''}</td><td><code>${d.tenantId ?? ''}</code></td><td><code>${d.eventId ?? ''}</code></td><td>${d.reason}</td></tr>`;
  return markup`<h2>Dead letters</h2>
<p class="muted">The first ${deadLetters.length} of ${waiting('incidents-deadletter')} in <code>incidents-deadletter</code>, newest first. Replay puts them back onto <code>incidents</code>; the delivery log keeps anything already delivered from going out twice.</p>
<table id="dead-letters">
<thead><tr><th>Failed at</th><th>Tenant</th><th>Event</th><th>Reason</th></tr></thead>
<tbody>
${deadLetters.map(row)}
</tbody>
</table>
${form}`;
}

function duration(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7_200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3_600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}
