import type { IncidentStatus, RiskScore, Severity } from '../sources/defender/incident-types.js';

/**
 * The incident's priority: a score from 0 to 100 that routing rules can test (`priority at least N`).
 * It adds up the incident's severity, the highest risk score among its devices, its alert count and
 * its status, then clamps to 0..100; a redirected (merged) incident scores 0, since the incident it
 * was merged into carries the priority. Every contribution is listed in `reasons`, so a person can
 * see why an incident went where it went. The weights are exported for the README.
 */
export const PRIORITY_WEIGHTS = {
  severity: { High: 50, Medium: 30, Low: 15, Informational: 5, UnSpecified: 0 },
  deviceRisk: { High: 25, Medium: 15, Low: 5, Informational: 0, None: 0 },
  /** Points per alert, up to `maxAlertPoints`. */
  perAlert: 2,
  maxAlertPoints: 15,
  status: { Active: 10, InProgress: 10, Resolved: -30, Redirected: 0 },
} as const satisfies {
  severity: Record<Severity, number>;
  deviceRisk: Record<RiskScore, number>;
  perAlert: number;
  maxAlertPoints: number;
  status: Record<IncidentStatus, number>;
};

export const PRIORITY_MIN = 0;
export const PRIORITY_MAX = 100;

export interface PriorityInput {
  /** The incident's severity (or, when it has none, the highest of its alerts': see `severityFrom`). */
  severity?: Severity;
  /** Where the severity came from, for the reason line. */
  severityFrom?: 'incident' | 'alerts';
  /** The highest risk score among the incident's devices. */
  highestDeviceRisk?: RiskScore;
  alertCount: number;
  status?: IncidentStatus;
}

export interface Priority {
  score: number;
  /** One line per contribution, e.g. `severity High: +50`. */
  reasons: string[];
}

export function scorePriority(input: PriorityInput): Priority {
  if (input.status === 'Redirected') {
    return { score: 0, reasons: ['status Redirected: 0 (merged into another incident, which carries the priority)'] };
  }
  const reasons: string[] = [];
  let score = 0;
  const add = (points: number, why: string) => {
    score += points;
    reasons.push(`${why}: ${points >= 0 ? '+' : '-'}${Math.abs(points)}`);
  };

  if (input.severity) {
    add(
      PRIORITY_WEIGHTS.severity[input.severity],
      `${input.severityFrom === 'alerts' ? 'highest alert severity' : 'severity'} ${input.severity}`,
    );
  } else {
    add(0, 'severity unknown');
  }
  if (input.highestDeviceRisk)
    add(PRIORITY_WEIGHTS.deviceRisk[input.highestDeviceRisk], `highest device risk ${input.highestDeviceRisk}`);

  const alertCount = Number.isFinite(input.alertCount) ? Math.max(0, Math.floor(input.alertCount)) : 0;
  const alertPoints = Math.min(PRIORITY_WEIGHTS.maxAlertPoints, alertCount * PRIORITY_WEIGHTS.perAlert);
  const capped =
    alertPoints === PRIORITY_WEIGHTS.maxAlertPoints && alertCount * PRIORITY_WEIGHTS.perAlert > alertPoints;
  add(
    alertPoints,
    `${alertCount} alert${alertCount === 1 ? '' : 's'}${capped ? ` (capped at ${PRIORITY_WEIGHTS.maxAlertPoints})` : ''}`,
  );

  if (input.status) add(PRIORITY_WEIGHTS.status[input.status], `status ${input.status}`);

  if (score < PRIORITY_MIN) {
    reasons.push(`score ${score} raised to ${PRIORITY_MIN}`);
    score = PRIORITY_MIN;
  } else if (score > PRIORITY_MAX) {
    reasons.push(`score ${score} lowered to ${PRIORITY_MAX}`);
    score = PRIORITY_MAX;
  }
  return { score, reasons };
}
