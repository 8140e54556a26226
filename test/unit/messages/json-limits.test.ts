import { describe, expect, it } from 'vitest';
import { describeViolation, findStructureViolation, INCIDENT_LIMITS } from '../../../shared/messages/json-limits.js';

const nested = (depth: number, leaf: unknown = 1): unknown => {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
};

describe('structural limits', () => {
  it('accepts a realistic incident and anything within the limits', () => {
    const incident = {
      incidentId: 1,
      alerts: [{ entities: [{ entityType: 'File', vmMetadata: { a: { b: [1, 2] } } }] }],
    };
    expect(findStructureViolation(incident)).toBeUndefined();
    expect(findStructureViolation('text')).toBeUndefined();
    expect(findStructureViolation(null)).toBeUndefined();
    // Exactly at the limit: the value itself is level 1.
    expect(findStructureViolation(nested(INCIDENT_LIMITS.maxDepth))).toBeUndefined();
    expect(findStructureViolation(Array.from({ length: INCIDENT_LIMITS.maxItems }, () => 0))).toBeUndefined();
  });

  it('finds nesting past the limit, with the path of the first container too deep', () => {
    expect(findStructureViolation(nested(INCIDENT_LIMITS.maxDepth + 1))).toEqual({
      path: Array(INCIDENT_LIMITS.maxDepth).fill('0').join('.'),
      message: 'nested deeper than 32 levels',
    });
    const incident = { incidentId: 1, alerts: [{ alertId: 'a' }, { entities: [{ x: nested(5_000) }] }] };
    const v = findStructureViolation(incident)!;
    expect(v.path.startsWith('alerts.1.entities.0.x.0.0')).toBe(true);
    expect(v.path.split('.')).toHaveLength(INCIDENT_LIMITS.maxDepth);
    expect(describeViolation(v)).toMatch(/^structure: alerts\.1\.entities\.0\.x\.0.*: nested deeper than 32 levels$/);
  });

  it('walks a million-deep array without overflowing the stack (what JSON.stringify cannot)', () => {
    const deep = JSON.parse(`${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`) as unknown;
    expect(() => JSON.stringify(deep)).toThrow(RangeError);
    expect(findStructureViolation(deep)?.message).toBe('nested deeper than 32 levels');
  });

  it('finds too many keys or items in one container, wherever it is', () => {
    const wide = Object.fromEntries(Array.from({ length: 1_001 }, (_, i) => [`k${i}`, i]));
    expect(findStructureViolation({ alerts: [{ devices: [wide] }] })).toEqual({
      path: 'alerts.0.devices.0',
      message: 'holds 1001 keys; at most 1000 per object',
    });
    expect(findStructureViolation({ tags: Array.from({ length: 10_001 }, () => 't') })).toEqual({
      path: 'tags',
      message: 'holds 10001 items; at most 10000 per array',
    });
  });

  it('cuts long keys in the path, so a hostile key cannot make a huge log line', () => {
    const v = findStructureViolation({ ['k'.repeat(10_000)]: nested(40) })!;
    expect(v.path.length).toBeLessThan(200);
  });

  it('keeps the first 40 characters of a cut key and marks the cut; a key of 40 is shown whole', () => {
    const v = findStructureViolation({ [`${'k'.repeat(40)}X`]: { ['j'.repeat(40)]: nested(40) } })!;
    expect(v.path).toBe(
      [`${'k'.repeat(40)}…`, 'j'.repeat(40), ...Array(INCIDENT_LIMITS.maxDepth - 2).fill('0')].join('.'),
    );
  });

  it('names the value itself as the top level when it breaks a limit', () => {
    const v = findStructureViolation(Array.from({ length: INCIDENT_LIMITS.maxItems + 1 }, () => 0))!;
    expect(describeViolation(v)).toBe('structure: (top level): holds 10001 items; at most 10000 per array');
  });
});
