import { bootstrap, exitAfterFlush, reportFailure } from './settings.js';
import { parseTenantsArgs, runTenantsCommand, TENANTS_USAGE } from './tenant-commands.js';

/** `npm run tenants -- add|list|enable|disable|remove|consent-link`: see TENANTS_USAGE. */
async function main(args: string[]): Promise<number> {
  const { command, settingsFile } = parseTenantsArgs(args);
  if (command.command === 'help') {
    process.stdout.write(`${TENANTS_USAGE}\n`);
    return args.length === 0 ? 2 : 0;
  }
  const { services } = bootstrap(settingsFile);
  process.stdout.write(`${await runTenantsCommand(command, services)}\n`);
  return 0;
}

main(process.argv.slice(2)).then(exitAfterFlush, (err: unknown) => exitAfterFlush(reportFailure(err)));
