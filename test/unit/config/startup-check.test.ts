import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fieldProblemsError, readJsonConfigFile } from '../../../shared/config/config-file.js';
import { configurationHealth } from '../../../shared/status/health.js';
import {
  checkConfiguration,
  CONFIGURATION_FILES,
  ConfigurationError,
  describeConfigurationProblem,
  type ConfigurationFile,
} from '../../../shared/config/startup-check.js';

const dir = mkdtempSync(join(tmpdir(), 'startup-check-'));
const routes = join(dir, 'routes.json');
writeFileSync(
  routes,
  JSON.stringify(
    {
      destinations: { archive: { type: 'queue', queueName: 'routed-archive' } },
      rules: [],
      defaultRoute: { destinations: ['archive'] },
    },
    null,
    2,
  ),
);
const env = {
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
  KEY_VAULT_URL: 'https://relay.vault.azure.net',
  ROUTES_FILE: routes,
};

describe('the start-up configuration check', () => {
  it('passes a configuration that loads, settings and files', () => {
    expect(checkConfiguration(env)).toEqual([]);
    expect(CONFIGURATION_FILES.map((f) => f.setting)).toEqual(['ROUTES_FILE', 'WEBHOOK_ACCESS_FILE']);
  });

  it('names each setting that is wrong (and checks no file until the settings are right)', () => {
    const problems = checkConfiguration({
      ...env,
      KEY_VAULT_URL: undefined,
      DESTINATION_TIMEOUT_MS: 'soon',
      ROUTES_FILE: join(dir, 'missing.json'),
    });
    expect(problems).toEqual([
      { setting: 'KEY_VAULT_URL', message: 'KEY_VAULT_URL is required but not set' },
      { setting: 'DESTINATION_TIMEOUT_MS', message: 'DESTINATION_TIMEOUT_MS: must be a whole number' },
    ]);
  });

  it("gives a file's problems with the setting, the file, the line and the field", () => {
    const broken = join(dir, 'broken.json');
    writeFileSync(
      broken,
      '{\n  "destinations": {},\n  "rules": [],\n  "defaultRoute": { "destinations": ["gone"] }\n}\n',
    );
    const [problem, ...others] = checkConfiguration({ ...env, ROUTES_FILE: broken });
    expect(others).toEqual([]);
    expect(problem).toEqual({
      setting: 'ROUTES_FILE',
      file: broken,
      line: 4,
      column: 38,
      field: 'defaultRoute: destinations[0]',
      message: 'no destination named "gone" (declared: none)',
    });
    expect(describeConfigurationProblem(problem!)).toBe(
      `ROUTES_FILE ${broken}:4:38: defaultRoute: destinations[0]: no destination named "gone" (declared: none)`,
    );
    const error = new ConfigurationError([problem!]);
    expect(error.message).toBe(
      `The configuration cannot be used (1 problem); fix it and start again:\n  ROUTES_FILE ${broken}:4:38: defaultRoute: destinations[0]: no destination named "gone" (declared: none)`,
    );
  });

  it('takes a new configuration file with one entry: its setting and how the app loads it', () => {
    const access = join(dir, 'access.json');
    writeFileSync(access, '{\n  "callers": [\n    { "name": 7 }\n  ]\n}\n');
    const accessFile: ConfigurationFile = {
      setting: 'EXAMPLE_ACCESS_FILE',
      load: () => {
        const file = readJsonConfigFile(access, 'EXAMPLE_ACCESS_FILE');
        throw fieldProblemsError(file, [{ path: ['callers', 0, 'name'], message: 'must be a string' }]);
      },
    };
    expect(checkConfiguration(env, [...CONFIGURATION_FILES, accessFile])).toEqual([
      {
        setting: 'EXAMPLE_ACCESS_FILE',
        file: access,
        line: 3,
        column: 7,
        field: 'callers[0].name',
        message: 'must be a string',
      },
    ]);
    // A loader that throws something else is still reported, under its setting.
    const failing: ConfigurationFile = {
      setting: 'OTHER_FILE',
      load: () => {
        throw new Error('no good: client_secret=abc123');
      },
    };
    const [other] = checkConfiguration(env, [failing]);
    expect(other).toEqual({ setting: 'OTHER_FILE', message: 'Error: no good: client_secret=[redacted]' });
    expect(describeConfigurationProblem(other!)).toBe('OTHER_FILE: Error: no good: client_secret=[redacted]');
  });

  it('is a failing health check with the problems, or a passing one', () => {
    const problems = checkConfiguration({ ...env, ROUTES_FILE: join(dir, 'rotues.json') });
    const check = configurationHealth(problems, ['ROUTES_FILE']);
    expect(check).toMatchObject({
      name: 'configuration',
      ok: false,
      problems: [{ setting: 'ROUTES_FILE', file: join(dir, 'rotues.json') }],
    });
    expect(check.detail).toContain(
      `ROUTES_FILE ${join(dir, 'rotues.json')}: cannot read the file (ENOENT: it does not exist)`,
    );
    expect(configurationHealth([], ['ROUTES_FILE'])).toMatchObject({ name: 'configuration', ok: true });
  });
});
