import { parseArgs } from 'node:util';
import { doctorDependencies, runDoctor } from '../shared/tenants/doctor.js';
import { InvalidTenantIdError, parseTenantId } from '../shared/tenants/tenant-admin.js';
import { formatDoctorReport } from './format.js';
import { bootstrap, exitAfterFlush, reportFailure, settingsFileOf, UsageError } from './settings.js';

const USAGE = `Usage: npm run doctor -- [--tenant <tenantId> | --all] [--json] [--settings <local.settings.json> | --state-dir <dir>]

For each enabled tenant (--all: disabled ones too; --tenant: that one, enabled or not): reads its
credential from Key Vault, gets a Defender token, checks the token's tid and roles, and calls the
Defender API once. Prints one row per tenant with the cause of any failure; exits 1 if any failed.`;

function parseDoctorArgs(args: string[]): {
  tenantId?: string;
  all: boolean;
  json: boolean;
  settingsFile?: string;
  help: boolean;
} {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        tenant: { type: 'string' },
        all: { type: 'boolean' },
        json: { type: 'boolean' },
        settings: { type: 'string' },
        'state-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError([(err as Error).message.split('\n')[0]!]);
  }
  let tenantId: string | undefined;
  try {
    tenantId = values.tenant === undefined ? undefined : parseTenantId(values.tenant);
  } catch (err) {
    if (err instanceof InvalidTenantIdError) throw new UsageError([`--tenant: ${err.message}`]);
    throw err;
  }
  if (tenantId && values.all) throw new UsageError(['--tenant and --all do not go together']);
  return {
    tenantId,
    all: values.all === true,
    json: values.json === true,
    settingsFile: settingsFileOf({ settings: values.settings, stateDir: values['state-dir'] }),
    help: values.help === true,
  };
}

/** `npm run doctor`: the onboarding checks for every tenant (or one), as a table or JSON. */
async function main(args: string[]): Promise<number> {
  const options = parseDoctorArgs(args);
  if (options.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { services } = bootstrap(options.settingsFile);
  const tenants = options.tenantId
    ? [await services.registry.get(options.tenantId)]
    : await services.registry.list({ enabledOnly: !options.all });
  const checks = await runDoctor(tenants, doctorDependencies(services));
  const ok = checks.every((c) => c.ok);
  process.stdout.write(
    `${options.json ? JSON.stringify({ ok, tenants: checks }, null, 2) : formatDoctorReport(checks)}\n`,
  );
  return ok ? 0 : 1;
}

main(process.argv.slice(2)).then(exitAfterFlush, (err: unknown) => exitAfterFlush(reportFailure(err)));
