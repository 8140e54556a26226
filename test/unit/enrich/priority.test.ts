import { describe, expect, it } from 'vitest';
import { PRIORITY_WEIGHTS, scorePriority } from '../../../shared/enrich/priority.js';

describe('the priority score', () => {
  it.each([
    ['High', 50],
    ['Medium', 30],
    ['Low', 15],
    ['Informational', 5],
    ['UnSpecified', 0],
  ] as const)('weighs severity %s at %i', (severity, points) => {
    expect(PRIORITY_WEIGHTS.severity[severity]).toBe(points);
    const { score, reasons } = scorePriority({ severity, alertCount: 0 });
    expect(score).toBe(points);
    expect(reasons).toEqual([`severity ${severity}: +${points}`, '0 alerts: +0']);
  });

  it.each([
    ['High', 25],
    ['Medium', 15],
    ['Low', 5],
    ['Informational', 0],
    ['None', 0],
  ] as const)('adds %s device risk as %i', (risk, points) => {
    const { score, reasons } = scorePriority({ severity: 'Low', highestDeviceRisk: risk, alertCount: 0 });
    expect(score).toBe(15 + points);
    expect(reasons).toContain(`highest device risk ${risk}: +${points}`);
  });

  it.each([
    [0, 0],
    [1, 2],
    [3, 6],
    [7, 14],
    [8, 15],
    [100, 15],
  ])('gives %i alerts %i points, capped at 15', (alertCount, points) => {
    const { score, reasons } = scorePriority({ alertCount });
    expect(score).toBe(points);
    expect(reasons.at(-1)).toMatch(new RegExp(`^${alertCount} alerts?.*: \\+${points}$`));
    if (alertCount * 2 > 15) expect(reasons.at(-1)).toContain('capped at 15');
  });

  it.each([
    ['Active', 10],
    ['InProgress', 10],
  ] as const)('adds %i for status %s', (status, points) => {
    expect(scorePriority({ severity: 'Medium', alertCount: 1, status })).toEqual({
      score: 30 + 2 + points,
      reasons: ['severity Medium: +30', '1 alert: +2', `status ${status}: +${points}`],
    });
  });

  it('takes 30 off a resolved incident, never below 0', () => {
    expect(scorePriority({ severity: 'High', alertCount: 2, status: 'Resolved' })).toEqual({
      score: 24,
      reasons: ['severity High: +50', '2 alerts: +4', 'status Resolved: -30'],
    });
    const low = scorePriority({ severity: 'Low', alertCount: 1, status: 'Resolved' });
    expect(low.score).toBe(0);
    expect(low.reasons).toEqual(['severity Low: +15', '1 alert: +2', 'status Resolved: -30', 'score -13 raised to 0']);
  });

  it('scores a redirected incident 0, whatever else it says', () => {
    const { score, reasons } = scorePriority({
      severity: 'High',
      highestDeviceRisk: 'High',
      alertCount: 5,
      status: 'Redirected',
    });
    expect(score).toBe(0);
    expect(reasons).toEqual([expect.stringContaining('status Redirected: 0')]);
  });

  it('reaches exactly 100 at the top and says where a fallback severity came from', () => {
    expect(scorePriority({ severity: 'High', highestDeviceRisk: 'High', alertCount: 20, status: 'Active' }).score).toBe(
      100,
    );
    expect(scorePriority({ severity: 'Medium', severityFrom: 'alerts', alertCount: 0 }).reasons[0]).toBe(
      'highest alert severity Medium: +30',
    );
    expect(scorePriority({ alertCount: 0 }).reasons[0]).toBe('severity unknown: +0');
  });

  it('treats a nonsense alert count as none', () => {
    expect(scorePriority({ alertCount: Number.NaN }).score).toBe(0);
    expect(scorePriority({ alertCount: -4 }).score).toBe(0);
  });
});
