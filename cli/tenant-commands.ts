import { parseArgs, type ParseArgsConfig } from 'node:util';
import { describeCredential } from '../shared/tenants/doctor.js';
import type { Services } from '../shared/services.js';
import {
  consentInstructions,
  listTenantViews,
  parseTenantId,
  putTenant,
  InvalidTenantIdError,
} from '../shared/tenants/tenant-admin.js';
import { tenantSchema, TenantValidationError, type TenantInput } from '../shared/tenants/tenants.js';
import { formatConsentInstructions, formatTenantList } from './format.js';
import { settingsFileOf, UsageError } from './settings.js';

/**
 * `npm run tenants -- <command>`: the tenant registry from the command line. Arguments are parsed
 * and validated before any setting is read or any service called, and every problem names its flag.
 */

export const TENANTS_USAGE = `Usage: npm run tenants -- <command> [options]

Commands:
  add --tenant-id <guid> --name <name> --context application|partner --client-id <guid>
      (--secret-name <kv-secret> | --certificate-secret-name <kv-secret> | --managed-identity)
      [--source defender|graph] [--lookback-hours <n>] [--disabled]
                           add a tenant, or replace the one with that tenant id; --source:
                           the API its incidents are read through (default defender: the
                           Defender XDR API; graph: the Microsoft Graph security API)
  list [--json]            every tenant with its last poll
  enable <tenantId>        poll the tenant again
  disable <tenantId>       stop polling the tenant (it stays registered)
  remove <tenantId>        remove the tenant from the registry
  consent-link <tenantId>  the admin-consent link of a partner tenant, and what to do with it

Every command takes --settings <local.settings.json> or --state-dir <dir> (the folder npm start
wrote its settings to; default: the environment, else ./local.settings.json, else
./.local/local.settings.json written by npm start).`;

export type TenantsCommand =
  | { command: 'add'; tenant: TenantInput }
  | { command: 'list'; json: boolean }
  | { command: 'enable' | 'disable' | 'remove' | 'consent-link'; tenantId: string }
  | { command: 'help' };

export interface ParsedTenantsArgs {
  command: TenantsCommand;
  settingsFile?: string;
}

const ADD_OPTIONS = {
  'tenant-id': { type: 'string' },
  name: { type: 'string' },
  context: { type: 'string' },
  source: { type: 'string' },
  'client-id': { type: 'string' },
  'secret-name': { type: 'string' },
  'certificate-secret-name': { type: 'string' },
  'managed-identity': { type: 'boolean' },
  'lookback-hours': { type: 'string' },
  disabled: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

const COMMON_OPTIONS = {
  settings: { type: 'string' },
  'state-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

const COMMANDS = ['add', 'list', 'enable', 'disable', 'remove', 'consent-link'];

/** Parses `tenants` arguments; throws `UsageError` listing every problem, each naming its flag. */
export function parseTenantsArgs(args: string[]): ParsedTenantsArgs {
  const [command, ...rest] = args;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h')
    return { command: { command: 'help' } };
  if (!COMMANDS.includes(command))
    throw new UsageError([`unknown command '${command}': use one of ${COMMANDS.join(', ')}`]);

  const options = command === 'add' ? { ...COMMON_OPTIONS, ...ADD_OPTIONS } : COMMON_OPTIONS;
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (err) {
    const unknown = /Unknown option '([^']+)'/.exec((err as Error).message)?.[1];
    throw new UsageError([
      unknown
        ? `${command}: unknown option ${unknown} (see npm run tenants -- --help)`
        : `${command}: ${(err as Error).message.split('\n')[0]}`,
    ]);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const settingsFile = settingsFileOf({
    settings: values.settings as string | undefined,
    stateDir: values['state-dir'] as string | undefined,
  });
  if (values.help) return { command: { command: 'help' }, settingsFile };

  if (command === 'add') {
    if (parsed.positionals.length)
      throw new UsageError([`add takes no positional arguments (got ${parsed.positionals.join(' ')}): use the flags`]);
    return { command: { command: 'add', tenant: tenantFromFlags(values) }, settingsFile };
  }
  if (command === 'list') return { command: { command: 'list', json: values.json === true }, settingsFile };

  const [tenantId, ...extra] = parsed.positionals;
  if (tenantId === undefined)
    throw new UsageError([`${command} needs the tenant id: npm run tenants -- ${command} <tenantId>`]);
  if (extra.length) throw new UsageError([`${command} takes one tenant id (got ${parsed.positionals.join(' ')})`]);
  try {
    return {
      command: {
        command: command as 'enable' | 'disable' | 'remove' | 'consent-link',
        tenantId: parseTenantId(tenantId),
      },
      settingsFile,
    };
  } catch (err) {
    if (err instanceof InvalidTenantIdError) throw new UsageError([`<tenantId>: ${err.message}`]);
    throw err;
  }
}

/** Where each registry field comes from on the command line, so a problem names the flag to fix. */
function flagFor(path: string, values: Record<string, unknown>): string {
  if (path.startsWith('credential'))
    return values['certificate-secret-name'] !== undefined ? '--certificate-secret-name' : '--secret-name';
  const flags: Record<string, string> = {
    tenantId: '--tenant-id',
    displayName: '--name',
    context: '--context',
    source: '--source',
    clientId: '--client-id',
    firstRunLookbackHours: '--lookback-hours',
    enabled: '--disabled',
  };
  return flags[path] ?? path;
}

function tenantFromFlags(values: Record<string, string | boolean | undefined>): TenantInput {
  const problems: string[] = [];
  for (const flag of ['tenant-id', 'name', 'context', 'client-id'])
    if (values[flag] === undefined) problems.push(`--${flag} is required`);

  const credentialFlags = ['secret-name', 'certificate-secret-name', 'managed-identity'].filter(
    (f) => values[f] !== undefined && values[f] !== false,
  );
  if (credentialFlags.length !== 1) {
    problems.push(
      credentialFlags.length === 0
        ? 'say how the tenant authenticates: --secret-name <kv-secret>, --certificate-secret-name <kv-secret> or --managed-identity'
        : `give only one of ${credentialFlags.map((f) => `--${f}`).join(', ')}`,
    );
  }
  if (values['managed-identity'] && values.context === 'partner') {
    problems.push(
      "--managed-identity: the Function App's managed identity reads only its own tenant (application context); a partner tenant needs --secret-name or --certificate-secret-name",
    );
  }
  let lookback: number | undefined;
  if (values['lookback-hours'] !== undefined) {
    const raw = String(values['lookback-hours']);
    if (/^\d+$/.test(raw)) lookback = Number(raw);
    else problems.push(`--lookback-hours: must be a whole number of hours (got '${raw}')`);
  }

  const input = {
    tenantId: values['tenant-id'],
    displayName: values.name,
    context: values.context,
    ...(values.source !== undefined ? { source: values.source } : {}),
    clientId: values['client-id'],
    credential: values['managed-identity']
      ? { kind: 'managedIdentity' }
      : values['certificate-secret-name'] !== undefined
        ? { kind: 'certificate', secretName: values['certificate-secret-name'] }
        : { kind: 'secret', secretName: values['secret-name'] },
    enabled: values.disabled !== true,
    ...(lookback !== undefined ? { firstRunLookbackHours: lookback } : {}),
  };
  const parsed = tenantSchema.safeParse(input);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = issue.path.join('.');
      const flag = flagFor(path, values);
      // Missing flags and a missing credential are already reported above, in words.
      if (
        problems.some((p) => p.startsWith(`${flag} is required`)) ||
        (path.startsWith('credential') && credentialFlags.length !== 1)
      )
        continue;
      const got =
        path === 'firstRunLookbackHours' || path.startsWith('credential')
          ? ''
          : ` (got '${String((input as Record<string, unknown>)[path] ?? '')}')`;
      problems.push(`${flag}: ${issue.message}${got}`);
    }
  }
  if (problems.length) throw new UsageError(problems);
  return input as TenantInput;
}

function secretFlagOf(tenant: TenantInput): string {
  return tenant.credential.kind === 'certificate' ? '--certificate-secret-name' : '--secret-name';
}

/** Runs a parsed command; returns what to print on stdout. */
export async function runTenantsCommand(
  command: Exclude<TenantsCommand, { command: 'help' }>,
  services: Services,
): Promise<string> {
  switch (command.command) {
    case 'add': {
      const { tenant, created, warnings } = await putTenant(command.tenant, services).catch((err: unknown) => {
        // A refused credential names its flag, like every other problem with the arguments.
        if (err instanceof TenantValidationError)
          throw new UsageError(
            err.problems.map((p) => p.replace(/^credential\.secretName:/, `${secretFlagOf(command.tenant)}:`)),
          );
        throw err;
      });
      const next =
        tenant.context === 'partner'
          ? [
              `Next: send the admin-consent link to the tenant's Global Administrator: npm run tenants -- consent-link ${tenant.tenantId}`,
              `      then check the tenant: npm run doctor -- --tenant ${tenant.tenantId}`,
            ]
          : [`Next: check the tenant: npm run doctor -- --tenant ${tenant.tenantId}`];
      return [
        ...warnings.map((w) => `Warning: ${w}`),
        `${created ? 'Registered' : 'Replaced'} ${tenant.displayName} (${tenant.tenantId}): ${tenant.context} context, read through ${tenant.source === 'graph' ? 'Microsoft Graph' : 'the Defender API'}, client ${tenant.clientId}, ${describeCredential(tenant.credential)}, ` +
          `${tenant.enabled ? 'enabled' : 'disabled'}, first poll looks back ${tenant.firstRunLookbackHours} h.`,
        ...next,
      ].join('\n');
    }
    case 'list': {
      const tenants = await listTenantViews(services);
      return command.json ? JSON.stringify(tenants, null, 2) : formatTenantList(tenants);
    }
    case 'enable':
    case 'disable': {
      const tenant = await services.registry.setEnabled(command.tenantId, command.command === 'enable');
      return `${tenant.displayName} (${tenant.tenantId}) is ${tenant.enabled ? 'enabled: the next poll schedule includes it' : 'disabled: it is no longer polled'}.`;
    }
    case 'remove': {
      const tenant = await services.registry.get(command.tenantId);
      await services.registry.remove(command.tenantId);
      return `Removed ${tenant.displayName} (${tenant.tenantId}) from the registry. Its Key Vault secret and app consent are unchanged.`;
    }
    case 'consent-link': {
      const tenant = await services.registry.get(command.tenantId);
      return formatConsentInstructions(consentInstructions(tenant, services.config.entra.authorityHost));
    }
  }
}
