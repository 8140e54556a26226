import { describe, expect, it } from 'vitest';
import type { HuntingTable } from '../../../local/defender/hunting-tables.js';
import { KqlError, parseKql, runKql } from '../../../local/defender/kql.js';

const NOW = Date.parse('2026-11-20T12:00:00Z');
const table: HuntingTable = {
  schema: [
    { Name: 'Timestamp', Type: 'DateTime' },
    { Name: 'DeviceName', Type: 'String' },
    { Name: 'ReportId', Type: 'Int64' },
  ],
  rows: [
    { Timestamp: '2026-11-20T11:00:00.0000000Z', DeviceName: 'desktop-1.contoso.com', ReportId: 1 },
    { Timestamp: '2026-11-18T12:00:00.0000000Z', DeviceName: 'srv-dc1.contoso.com', ReportId: 2 },
    { Timestamp: '2026-11-01T12:00:00.0000000Z', DeviceName: 'desktop-2.contoso.com', ReportId: 3 },
  ],
};
const run = (query: string) => runKql(parseKql(query, NOW), table);
const reportIds = (query: string) => run(query).rows.map((row) => row.ReportId);

describe('the KQL subset', () => {
  it('filters with ==, !=, =~, in, contains and comparisons against ago() and datetime()', () => {
    expect(reportIds('T | where DeviceName == "srv-dc1.contoso.com"')).toEqual([2]);
    expect(reportIds("T | where DeviceName != 'srv-dc1.contoso.com'")).toEqual([1, 3]);
    expect(reportIds('T | where DeviceName =~ "SRV-DC1.CONTOSO.COM"')).toEqual([2]);
    expect(reportIds('T | where ReportId in (1, 3)')).toEqual([1, 3]);
    expect(reportIds('T | where DeviceName contains "desktop"')).toEqual([1, 3]);
    expect(reportIds('T | where Timestamp > ago(7d)')).toEqual([1, 2]);
    expect(reportIds('T | where Timestamp > ago(2h) and DeviceName has "contoso"')).toEqual([1]);
    expect(reportIds('T | where Timestamp <= datetime(2026-11-18T12:00:00Z)')).toEqual([2, 3]);
    expect(reportIds('T | where ReportId >= 2 | take 1')).toEqual([2]);
  });

  it('projects columns in the order asked, with their types', () => {
    const result = run('T // a comment\n| project ReportId, DeviceName | limit 2');
    expect(result.schema).toEqual([
      { Name: 'ReportId', Type: 'Int64' },
      { Name: 'DeviceName', Type: 'String' },
    ]);
    expect(result.rows).toEqual([
      { ReportId: 1, DeviceName: 'desktop-1.contoso.com' },
      { ReportId: 2, DeviceName: 'srv-dc1.contoso.com' },
    ]);
  });

  it.each([
    ['T | where', /expected a column name/],
    ['T | where DeviceName = "x"', /unexpected character '='/],
    ['T | where Timestamp > ago(seven)', /ago\(\) expects a timespan/],
    ['T | sort by Timestamp', /'sort' .* not supported/],
    ['T | take many', /whole number/],
    ['T where x == 1', /expected '\|'/],
    ['T | project Nope', /Nope/],
    ['T | where Nope == 1', /Nope/],
    ['| take 1', /table name/],
  ])('refuses %j', (query, message) => {
    expect(() => run(query)).toThrow(KqlError);
    expect(() => run(query)).toThrow(message);
  });
});
