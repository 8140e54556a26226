import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatDoctorReport, formatTable } from '../../../cli/format.js';
import { localCaFor, pointsAtLocalStack, resolveSettings, SettingsError } from '../../../cli/settings.js';
import type { TenantCheck } from '../../../shared/tenants/doctor.js';

/** Where the tools take the app's settings from, and what they print. */
describe('command-line settings', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'relay-settings-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const write = (path: string, values: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), JSON.stringify({ IsEncrypted: false, ...extra, Values: values }));
    return join(dir, path);
  };

  it('prefers --settings, then the environment, then ./local.settings.json, then ./.local/local.settings.json', () => {
    write('local.settings.json', { KEY_VAULT_URL: 'https://root' });
    write('.local/local.settings.json', { KEY_VAULT_URL: 'https://stack' });
    write('custom.json', { KEY_VAULT_URL: 'https://custom' });
    const env = { KEY_VAULT_URL: 'https://env', PATH: '/bin' };

    expect(resolveSettings({ settingsFile: 'custom.json', cwd: dir, env })).toMatchObject({
      source: './custom.json (--settings)',
      values: { KEY_VAULT_URL: 'https://custom' },
    });
    expect(resolveSettings({ cwd: dir, env })).toMatchObject({
      source: 'the environment',
      values: { KEY_VAULT_URL: 'https://env' },
    });
    expect(resolveSettings({ cwd: dir, env: {} })).toMatchObject({
      source: './local.settings.json',
      values: { KEY_VAULT_URL: 'https://root' },
    });
    rmSync(join(dir, 'local.settings.json'));
    expect(resolveSettings({ cwd: dir, env: {} })).toMatchObject({
      source: './.local/local.settings.json',
      file: join(dir, '.local', 'local.settings.json'),
    });
  });

  it('says what is wrong with the settings file, or that there is none', () => {
    expect(() => resolveSettings({ cwd: dir, env: {} })).toThrow(
      /No app settings found: set them in the environment .* pass --settings/,
    );
    expect(() => resolveSettings({ settingsFile: 'nope.json', cwd: dir, env: {} })).toThrow(
      `--settings: no file at ${join(dir, 'nope.json')}`,
    );
    writeFileSync(join(dir, 'broken.json'), '{');
    expect(() => resolveSettings({ settingsFile: 'broken.json', cwd: dir, env: {} })).toThrow(
      /broken.json is not valid JSON/,
    );
    write('encrypted.json', {}, { IsEncrypted: true });
    expect(() => resolveSettings({ settingsFile: 'encrypted.json', cwd: dir, env: {} })).toThrow(
      /is encrypted: decrypt it first/,
    );
    write('number.json', { POLL_MAX_PAGES_PER_RUN: 5 });
    expect(() => resolveSettings({ settingsFile: 'number.json', cwd: dir, env: {} })).toThrow(SettingsError);
    expect(() => resolveSettings({ settingsFile: 'number.json', cwd: dir, env: {} })).toThrow(
      /Values.POLL_MAX_PAGES_PER_RUN must be a string/,
    );
  });

  it('trusts the CA the settings file names (Values.NODE_EXTRA_CA_CERTS, relative to the file), whatever its folder is called', () => {
    const elsewhere = write('stacks/demo/local.settings.json', { NODE_EXTRA_CA_CERTS: 'ca.pem' });
    const settings = resolveSettings({ settingsFile: elsewhere, cwd: dir, env: {} });
    expect(() => localCaFor(settings)).toThrow(
      `Values.NODE_EXTRA_CA_CERTS names ${join(dir, 'stacks', 'demo', 'ca.pem')}, which does not exist`,
    );
    writeFileSync(join(dir, 'stacks', 'demo', 'ca.pem'), 'PEM');
    expect(localCaFor(settings)).toBe(join(dir, 'stacks', 'demo', 'ca.pem'));
    // A folder called .local with a ca.pem in it is not trusted unless the settings name it.
    mkdirSync(join(dir, '.local'), { recursive: true });
    writeFileSync(join(dir, '.local', 'ca.pem'), 'PEM');
    const unnamed = write('.local/local.settings.json', {});
    expect(localCaFor(resolveSettings({ settingsFile: unnamed, cwd: dir, env: {} }))).toBeUndefined();
    expect(pointsAtLocalStack({ ENTRA_AUTHORITY_HOST: 'https://localhost:4443' })).toBe(true);
    expect(pointsAtLocalStack({ KEY_VAULT_URL: 'https://127.0.0.1:1234' })).toBe(true);
    expect(
      pointsAtLocalStack({
        KEY_VAULT_URL: 'https://relay-kv.vault.azure.net',
        ENTRA_AUTHORITY_HOST: 'https://login.microsoftonline.com',
      }),
    ).toBe(false);
  });
});

describe('command-line output', () => {
  it('pads columns and leaves the last one (the cause) free', () => {
    expect(
      formatTable(
        ['A', 'LONG HEADER', 'CAUSE'],
        [
          ['x', 'y', 'a long cause'],
          ['wider', 'z', ''],
        ],
      ).split('\n'),
    ).toEqual([
      'A      LONG HEADER  CAUSE',
      '-----  -----------  -----',
      'x      y            a long cause',
      'wider  z',
    ]);
  });

  it('prints one doctor row per tenant with step marks, the cause, warnings and a summary', () => {
    const row = (over: Partial<TenantCheck>): TenantCheck => ({
      tenantId: '00000000-0000-0000-0000-000000000001',
      displayName: 'Fabrikam',
      context: 'application',
      source: 'defender',
      clientId: '00000000-0000-0000-0000-0000000000aa',
      credential: "secret 'x'",
      enabled: true,
      ok: true,
      steps: (['secret', 'token', 'permissions', 'api'] as const).map((name) => ({ name, status: 'ok', detail: '' })),
      warnings: [],
      token: { roles: ['Incident.Read.All'] },
      ...over,
    });
    const text = formatDoctorReport([
      row({ warnings: ['no AdvancedHunting.Read.All: hunting enrichment is off for this tenant'] }),
      row({
        displayName: 'Adatum',
        source: 'graph',
        enabled: false,
        ok: false,
        cause: 'AADSTS700016: the app is not consented',
        steps: [
          { name: 'secret', status: 'ok', detail: '' },
          { name: 'token', status: 'failed', detail: '' },
          { name: 'permissions', status: 'skipped', detail: '' },
          { name: 'api', status: 'skipped', detail: '' },
        ],
      }),
    ]);
    const lines = text.split('\n');
    expect(lines[2]).toMatch(
      /^Fabrikam +0{8}-0{4}-0{4}-0{4}-0{11}1 +application +defender +ok +ok +ok +ok +roles Incident.Read.All$/,
    );
    expect(lines[3]).toMatch(
      /^Adatum \(disabled\) +\S+ +application +graph +ok +FAILED +- +- +AADSTS700016: the app is not consented$/,
    );
    expect(text).toContain('warning: Fabrikam: no AdvancedHunting.Read.All');
    expect(lines.at(-1)).toBe('1 tenant(s) ok, 1 failed');
    expect(formatDoctorReport([])).toBe('No tenants registered: nothing to check.');
  });
});
