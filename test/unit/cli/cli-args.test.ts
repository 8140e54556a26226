import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseTenantsArgs } from '../../../cli/tenant-commands.js';
import { UsageError } from '../../../cli/settings.js';

/** `npm run tenants` arguments: parsed without touching settings or services; every problem names its flag. */
describe('tenants command-line arguments', () => {
  const tenantId = randomUUID();
  const clientId = randomUUID();
  const base = [
    'add',
    '--tenant-id',
    tenantId,
    '--name',
    'Fabrikam',
    '--context',
    'application',
    '--client-id',
    clientId,
  ];

  const problemsOf = (args: string[]): string[] => {
    try {
      parseTenantsArgs(args);
    } catch (err) {
      if (err instanceof UsageError) return err.problems;
      throw err;
    }
    throw new Error('expected a usage error');
  };

  it('builds the tenant from add flags, with the settings file apart', () => {
    expect(
      parseTenantsArgs([
        ...base,
        '--secret-name',
        'tenant-fabrikam-secret',
        '--lookback-hours',
        '48',
        '--settings',
        'x.json',
      ]),
    ).toEqual({
      command: {
        command: 'add',
        tenant: {
          tenantId,
          displayName: 'Fabrikam',
          context: 'application',
          clientId,
          credential: { kind: 'secret', secretName: 'tenant-fabrikam-secret' },
          enabled: true,
          firstRunLookbackHours: 48,
        },
      },
      settingsFile: 'x.json',
    });
    expect(
      parseTenantsArgs([...base, '--certificate-secret-name', 'fabrikam-cert', '--disabled']).command,
    ).toMatchObject({
      tenant: { credential: { kind: 'certificate', secretName: 'fabrikam-cert' }, enabled: false },
    });
    expect(parseTenantsArgs([...base, '--managed-identity']).command).toMatchObject({
      tenant: { credential: { kind: 'managedIdentity' } },
    });
  });

  it('names the flag of every invalid value', () => {
    expect(
      problemsOf([
        'add',
        '--tenant-id',
        'contoso',
        '--name',
        '',
        '--context',
        'user',
        '--client-id',
        '42',
        '--secret-name',
        'bad name',
        '--lookback-hours',
        '2d',
      ]),
    ).toEqual([
      "--lookback-hours: must be a whole number of hours (got '2d')",
      "--tenant-id: must be a GUID (got 'contoso')",
      "--name: must not be empty (got '')",
      expect.stringMatching(/^--context: .*application.*partner/),
      "--client-id: must be a GUID (got '42')",
      '--secret-name: must be a Key Vault secret name (letters, digits and dashes, at most 127)',
    ]);
    expect(problemsOf([...base, '--certificate-secret-name', 'a_b'])).toEqual([
      expect.stringMatching(/^--certificate-secret-name: must be a Key Vault secret name/),
    ]);
    expect(problemsOf([...base, '--secret-name', 'x', '--lookback-hours', '100000'])).toEqual([
      expect.stringMatching(/^--lookback-hours: /),
    ]);
  });

  it('asks for missing flags and exactly one way to authenticate', () => {
    expect(problemsOf(['add'])).toEqual([
      '--tenant-id is required',
      '--name is required',
      '--context is required',
      '--client-id is required',
      expect.stringMatching(/^say how the tenant authenticates: --secret-name/),
    ]);
    expect(problemsOf([...base, '--secret-name', 'a', '--managed-identity'])).toEqual([
      'give only one of --secret-name, --managed-identity',
    ]);
    expect(problemsOf([...base.map((a) => (a === 'application' ? 'partner' : a)), '--managed-identity'])).toEqual([
      expect.stringMatching(/^--managed-identity: .*partner tenant needs --secret-name/),
    ]);
  });

  it('refuses unknown commands, unknown options and a missing or malformed tenant id', () => {
    expect(problemsOf(['purge'])).toEqual([expect.stringMatching(/^unknown command 'purge': use one of add, list/)]);
    expect(problemsOf(['add', '--tenant', tenantId])).toEqual([
      'add: unknown option --tenant (see npm run tenants -- --help)',
    ]);
    expect(problemsOf(['disable'])).toEqual(['disable needs the tenant id: npm run tenants -- disable <tenantId>']);
    expect(problemsOf(['enable', 'fabrikam'])).toEqual([
      expect.stringMatching(/^<tenantId>: 'fabrikam' is not a tenant id/),
    ]);
    expect(problemsOf(['remove', tenantId, tenantId])).toEqual([expect.stringMatching(/^remove takes one tenant id/)]);
  });

  it('normalises tenant ids and reads list and help', () => {
    expect(parseTenantsArgs(['consent-link', tenantId.toUpperCase()]).command).toEqual({
      command: 'consent-link',
      tenantId,
    });
    expect(parseTenantsArgs(['list', '--json']).command).toEqual({ command: 'list', json: true });
    expect(parseTenantsArgs([]).command).toEqual({ command: 'help' });
    expect(parseTenantsArgs(['add', '--help']).command).toEqual({ command: 'help' });
  });
});
