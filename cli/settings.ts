import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { isTlsTrustFailure } from '../shared/auth/tls-errors.js';
import { ConfigError, loadConfig } from '../shared/config/config.js';
import { redact } from '../shared/telemetry/redact.js';
import { createAppCredential } from '../shared/auth/app-identity.js';
import { createServices, type Services } from '../shared/services.js';

/**
 * Where the command-line tools get the app's settings, and the start-up they share. The tools run
 * the app's own modules (Table storage, Key Vault, Entra ID, Defender) with the app's settings, from:
 * `--settings <file>` when given; else the environment, when it holds the app's settings (as in
 * Azure Cloud Shell with the Function App's settings exported); else `./local.settings.json`; else
 * `./.local/local.settings.json` (written by `npm start`, pointing at the local stand-ins).
 */

export interface ResolvedSettings {
  values: Record<string, string>;
  /** Where the values came from, for the first line a tool prints. */
  source: string;
  /** The settings file, when they came from one. */
  file?: string;
}

export class UsageError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'UsageError';
  }
}

export class SettingsError extends Error {
  override name = 'SettingsError';
}

/**
 * `--settings FILE` or `--state-dir DIR` (the folder `npm start --state-dir DIR` wrote its
 * local.settings.json to), at most one: the settings file it names, or undefined.
 */
export function settingsFileOf(options: { settings?: string; stateDir?: string }): string | undefined {
  if (options.settings !== undefined && options.stateDir !== undefined)
    throw new UsageError(['--settings and --state-dir do not go together: give one']);
  if (options.stateDir === undefined) return options.settings;
  const file = join(resolve(options.stateDir), 'local.settings.json');
  if (!existsSync(file)) {
    throw new SettingsError(
      `--state-dir: no local stack's settings in ${resolve(options.stateDir)} (no local.settings.json): start the stack there with npm start -- --state-dir ${options.stateDir}, or name the folder it uses`,
    );
  }
  return file;
}

/** The setting that tells the environment holds the app's settings (it has no default). */
const MARKER_SETTING = 'KEY_VAULT_URL';

export function resolveSettings(options: {
  settingsFile?: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
}): ResolvedSettings {
  const { settingsFile, cwd, env } = options;
  if (settingsFile !== undefined) {
    const file = resolve(cwd, settingsFile);
    if (!existsSync(file)) throw new SettingsError(`--settings: no file at ${file}`);
    return { values: readSettingsFile(file), source: `${displayPath(file, cwd)} (--settings)`, file };
  }
  if (env[MARKER_SETTING]) {
    const values: Record<string, string> = {};
    for (const [name, value] of Object.entries(env)) if (value !== undefined) values[name] = value;
    return { values, source: 'the environment' };
  }
  for (const candidate of [join(cwd, 'local.settings.json'), join(cwd, '.local', 'local.settings.json')]) {
    if (existsSync(candidate))
      return { values: readSettingsFile(candidate), source: displayPath(candidate, cwd), file: candidate };
  }
  throw new SettingsError(
    `No app settings found: set them in the environment (${MARKER_SETTING}, AzureWebJobsStorage, …), pass --settings <local.settings.json>, ` +
      `or run from the app's folder with a local.settings.json (or .local/local.settings.json, written by npm start).`,
  );
}

/** The `Values` of a `local.settings.json`-shaped file. */
export function readSettingsFile(file: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new SettingsError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const settings = parsed as { IsEncrypted?: unknown; Values?: unknown };
  if (settings.IsEncrypted === true)
    throw new SettingsError(`${file} is encrypted: decrypt it first (func settings decrypt)`);
  if (typeof settings.Values !== 'object' || settings.Values === null || Array.isArray(settings.Values)) {
    throw new SettingsError(
      `${file} has no "Values" object (the shape of local.settings.json: { "IsEncrypted": false, "Values": { … } })`,
    );
  }
  const values: Record<string, string> = {};
  for (const [name, value] of Object.entries(settings.Values)) {
    if (typeof value !== 'string') throw new SettingsError(`${file}: Values.${name} must be a string`);
    values[name] = value;
  }
  return values;
}

function displayPath(file: string, cwd: string): string {
  const rel = relative(cwd, file);
  return rel.startsWith('..') ? file : `./${rel}`;
}

/** Whether the settings point at the local stand-ins (whose HTTPS is signed by the local CA). */
export function pointsAtLocalStack(values: Record<string, string>): boolean {
  return [values.ENTRA_AUTHORITY_HOST, values.KEY_VAULT_URL, values.DEFENDER_API_URL, values.GRAPH_API_URL].some(
    (url) => {
      try {
        return url !== undefined && ['localhost', '127.0.0.1', '[::1]'].includes(new URL(url).hostname);
      } catch {
        return false;
      }
    },
  );
}

/**
 * The CA the settings file names in `Values.NODE_EXTRA_CA_CERTS` (npm start writes its local CA there,
 * as func start hands Values to the worker as its environment), resolved against the file's folder.
 * A named file that does not exist is an error that says so.
 */
export function localCaFor(settings: ResolvedSettings): string | undefined {
  const named = settings.values.NODE_EXTRA_CA_CERTS;
  if (!settings.file || !named) return undefined;
  const ca = resolve(dirname(settings.file), named);
  if (!existsSync(ca)) {
    throw new SettingsError(
      `${settings.file}: Values.NODE_EXTRA_CA_CERTS names ${ca}, which does not exist (is the local stack that wrote it still there? start it again with npm start)`,
    );
  }
  return ca;
}

export interface CliContext {
  services: Services;
  settings: ResolvedSettings;
}

/**
 * Resolves the settings and builds the app's services. When the settings point at the local stack
 * and Node does not trust its CA yet, the process runs itself again with NODE_EXTRA_CA_CERTS set to
 * it (Node reads it only at start-up; a value already set, such as a corporate CA bundle, names
 * another file and is replaced for this run) and exits with that run's code.
 */
export function bootstrap(settingsFile: string | undefined): CliContext {
  const settings = resolveSettings({ settingsFile, cwd: process.cwd(), env: process.env });
  if (settings.file && pointsAtLocalStack(settings.values)) {
    const ca = localCaFor(settings);
    if (ca && process.env.NODE_EXTRA_CA_CERTS !== ca) {
      const rerun = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
        stdio: 'inherit',
        env: { ...process.env, NODE_EXTRA_CA_CERTS: ca },
      });
      process.exit(rerun.status ?? 1);
    }
  }
  // The managed-identity endpoint the local stack's settings name: the CLI acts as the app's identity there.
  for (const name of ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER'])
    if (settings.values[name] && !process.env[name]) process.env[name] = settings.values[name];
  process.stderr.write(`Settings: ${settings.source}\n`);
  const config = loadConfig(settings.values);
  return {
    services: createServices(config, { appCredential: createAppCredential(config, { developerSignIn: true }) }),
    settings,
  };
}

/** Prints what went wrong in a way a person can act on, and the exit code for it. */
export function reportFailure(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`${err.problems.map((p) => `error: ${p}`).join('\n')}\n`);
    return 2;
  }
  if (err instanceof ConfigError || err instanceof SettingsError) {
    process.stderr.write(`error: ${redact(err.message)}\n`);
    return 1;
  }
  const message = redact(err instanceof Error ? err.message : String(err));
  process.stderr.write(`error: ${message.split('\n')[0]}\n`);
  if (isTlsTrustFailure(err)) {
    process.stderr.write(
      "hint: the server's certificate is not trusted. For the local stack, its CA is the file npm start names in Values.NODE_EXTRA_CA_CERTS of the settings it wrote (<state dir>/local.settings.json): run with those settings (--settings or --state-dir), or set NODE_EXTRA_CA_CERTS to that file.\n",
    );
  }
  return 1;
}

/** Exits once everything written to stdout and stderr has been flushed (piped output is asynchronous). */
export function exitAfterFlush(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}
