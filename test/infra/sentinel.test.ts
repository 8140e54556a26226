import { beforeAll, describe, expect, it } from 'vitest';
import { COLUMN_TYPES } from '../../local/logs-ingestion/rules.js';
import {
  DEFAULT_SENTINEL_STREAM,
  SENTINEL_COLUMNS,
  SENTINEL_TABLE_NAME,
} from '../../shared/route/destinations/sentinel-columns.js';
import {
  evaluate,
  loadInfra,
  modules,
  outputs,
  params,
  prop,
  properties,
  resources,
  vars,
  type BicepFile,
  type Infra,
} from '../support/bicep.js';

/**
 * The optional Sentinel module against the relay's row: one list of columns (shared/destinations/
 * sentinel-columns.ts) is the code's row, the stream the data collection rule declares and the table's
 * schema. No Bicep compiler runs here (test/infra/bicep-compiler.test.ts builds and lints it with the rest).
 */

let infra: Infra;
let sentinel: BicepFile;
let table: BicepFile;
beforeAll(async () => {
  infra = await loadInfra();
  sentinel = infra.file('core/sentinel.bicep');
  table = infra.file('core/sentinel-table.bicep');
});

const squash = (text: string | undefined) => text?.replace(/\s+/g, ' ').trim();
const resource = (file: BicepFile, type: string) => {
  const found = resources(file).filter((r) => r.type === type && !r.existing);
  expect(found, type).toHaveLength(1);
  return found[0]!;
};

describe('infra/core/sentinel.bicep', () => {
  it('declares the columns of shared/route/destinations/sentinel-columns.ts, in order, with their types and descriptions', () => {
    expect(evaluate(vars(sentinel).get('columns')!, sentinel)).toEqual(
      SENTINEL_COLUMNS.map(({ name, type, description }) => ({ name, type, description })),
    );
    for (const column of SENTINEL_COLUMNS) expect(COLUMN_TYPES).toContain(column.type);
    expect(evaluate(vars(sentinel).get('tableName')!, sentinel)).toBe(SENTINEL_TABLE_NAME);
    expect(vars(sentinel).get('streamName')?.text).toBe("'Custom-${tableName}'");
    expect(`Custom-${SENTINEL_TABLE_NAME}`).toBe(DEFAULT_SENTINEL_STREAM);
  });

  it('builds the stream declaration and the table schema from that one list', () => {
    const rule = resource(sentinel, 'Microsoft.Insights/dataCollectionRules');
    const streams = prop(rule.body, 'properties.streamDeclarations')!;
    expect(squash(streams.text)).toBe(
      "{ '${streamName}': { columns: map(columns, c => { name: c.name, type: c.type }) } }",
    );
    const tableModule = modules(sentinel).find((m) => m.source === 'sentinel-table.bicep')!;
    const columns = properties(prop(tableModule.body, 'params')!).get('columns')!;
    expect(squash(columns.text)).toBe(
      "map(columns, c => { name: c.name type: c.type == 'datetime' ? 'dateTime' : c.type description: c.description })",
    );
    const tableResource = resource(table, 'Microsoft.OperationalInsights/workspaces/tables');
    expect(prop(tableResource.body, 'properties.schema.columns')?.text).toBe('columns');
    expect(prop(tableResource.body, 'properties.schema.name')?.text).toBe('tableName');
    expect(evaluate(prop(tableResource.body, 'properties.plan')!, table)).toBe('Analytics');
  });

  it('sends the stream unchanged into the custom table of the given workspace, through the endpoint', () => {
    const rule = resource(sentinel, 'Microsoft.Insights/dataCollectionRules');
    const [flow, ...others] = (prop(rule.body, 'properties.dataFlows')!.namedChildren ?? []).filter(
      (n) => n.type === 'object',
    );
    expect(others).toEqual([]);
    expect(evaluate(prop(flow!, 'transformKql')!, sentinel)).toBe('source');
    expect(prop(flow!, 'outputStream')?.text).toBe('streamName');
    expect(squash(prop(flow!, 'streams')?.text)).toBe('[ streamName ]');
    expect(prop(rule.body, 'properties.dataCollectionEndpointId')?.text).toBe('endpoint.id');
    const [destination] = prop(rule.body, 'properties.destinations.logAnalytics')!.namedChildren.filter(
      (n) => n.type === 'object',
    );
    expect(prop(destination!, 'workspaceResourceId')?.text).toBe('workspace.id');
    // The table must exist before a data flow names it.
    expect(squash(prop(rule.body, 'dependsOn')?.text)).toBe('[ table ]');
    const tableModule = modules(sentinel).find((m) => m.source === 'sentinel-table.bicep')!;
    expect(prop(tableModule.body, 'scope')?.text).toBe('resourceGroup(workspaceParts[2], workspaceParts[4])');
  });

  it('outputs what a sentinel destination needs: endpoint, rule immutable id and stream, and the host to allow', () => {
    const out = outputs(sentinel);
    expect(out.get('logsIngestionEndpoint')?.text).toBe('endpoint.properties.logsIngestion.endpoint');
    expect(out.get('ruleImmutableId')?.text).toBe('rule.properties.immutableId');
    expect(out.get('streamName')?.text).toBe('streamName');
    expect(out.get('logsIngestionHost')?.text).toBe("split(endpoint.properties.logsIngestion.endpoint, '/')[2]");
  });
});

describe('infra/main.bicep and the Sentinel module', () => {
  it('deploys it only given sentinelWorkspaceResourceId (empty by default)', () => {
    const param = params(infra.main).find((p) => p.name === 'sentinelWorkspaceResourceId')!;
    expect(param.defaultValue && evaluate(param.defaultValue, infra.main)).toBe('');
    expect(vars(infra.main).get('deploySentinel')?.text).toBe('!empty(sentinelWorkspaceResourceId)');
    const module = infra.mainModule('core/sentinel.bicep');
    expect(module.condition?.text).toBe('(deploySentinel)');
    expect(properties(prop(module.body, 'params')!).get('workspaceResourceId')?.text).toBe(
      'sentinelWorkspaceResourceId',
    );
  });

  it('adds its endpoint host to DESTINATION_ALLOWED_HOSTS and outputs the destination settings, empty without it', () => {
    const api = infra.mainModule('app/api.bicep');
    expect(squash(prop(api.body, 'params.appSettings.DESTINATION_ALLOWED_HOSTS')?.text)).toBe(
      "join( union(destinationAllowedHosts, deploySentinel ? [sentinel!.outputs.logsIngestionHost] : []), ',' )",
    );
    const out = outputs(infra.main);
    expect(out.get('SENTINEL_LOGS_INGESTION_ENDPOINT')?.text).toBe(
      "deploySentinel ? sentinel!.outputs.logsIngestionEndpoint : ''",
    );
    expect(out.get('SENTINEL_DCR_IMMUTABLE_ID')?.text).toBe("deploySentinel ? sentinel!.outputs.ruleImmutableId : ''");
    expect(out.get('SENTINEL_STREAM_NAME')?.text).toBe("deploySentinel ? sentinel!.outputs.streamName : ''");
  });
});
