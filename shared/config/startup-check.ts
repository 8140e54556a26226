import { ConfigError, loadConfig, SETTING_NAMES, type AppConfig } from './config.js';
import { ConfigFileError, formatConfigFileProblem } from './config-file.js';
import { describeError, redact } from '../telemetry/redact.js';
import { ROUTES_SETTING, routingTableFor } from '../route/routing.js';
import { loadWebhookAccess, WEBHOOK_ACCESS_SETTING } from '../api/webhook-access.js';

/**
 * The start-up configuration check: every setting (shared/config/config.ts) and every configuration file
 * the settings name, loaded as the app will load them, every problem reported at once. It runs when
 * the app starts (functions/startupCheck.ts, an appStart hook: a failure stops the worker before any
 * function runs) and behind GET /api/health (cached: the answer the app started with).
 */

/** One thing wrong with the configuration: the setting to fix and, for a file, where in it. */
export interface ConfigurationProblem {
  /** The app setting concerned (the one naming the file, for a file's problem). */
  setting?: string;
  /** Absolute path of the configuration file. */
  file?: string;
  /** 1-based line and column in `file`. */
  line?: number;
  column?: number;
  /** The field, as the file's loader names it (`rules[2] "teams-high": match.severity[0]`). */
  field?: string;
  message: string;
}

/**
 * A configuration file the app reads: the setting naming it, and how the app loads it. `load` throws
 * when the file cannot be used: a `ConfigFileError` (config-file.ts) gives file, line and field; any
 * other error is reported with the setting. Whatever `load` keeps (a cache) is what the app then uses.
 */
export interface ConfigurationFile {
  setting: string;
  load(config: AppConfig): unknown;
}

/** Every configuration file the start-up check loads. A new file is one line here. */
export const CONFIGURATION_FILES: readonly ConfigurationFile[] = [
  { setting: ROUTES_SETTING, load: (config) => routingTableFor(config.routing) },
  { setting: WEBHOOK_ACCESS_SETTING, load: (config) => loadWebhookAccess(config.webhook) },
];

/** The problems of the configuration in `env`: the settings first; the files when the settings are valid (they name them). */
export function checkConfiguration(
  env: Record<string, string | undefined> = process.env,
  files: readonly ConfigurationFile[] = CONFIGURATION_FILES,
): ConfigurationProblem[] {
  let config: AppConfig;
  try {
    config = loadConfig(env);
  } catch (err) {
    return configurationProblemsOf(err);
  }
  return files.flatMap((file) => {
    try {
      file.load(config);
      return [];
    } catch (err) {
      return configurationProblemsOf(err, file.setting);
    }
  });
}

/** An error from loading configuration as problems (a `ConfigFileError` keeps its lines; a `ConfigError` names its settings). */
export function configurationProblemsOf(err: unknown, setting?: string): ConfigurationProblem[] {
  if (err instanceof ConfigFileError) {
    return err.problems.map((p) => ({ setting: err.setting ?? setting, file: err.file, ...p }));
  }
  if (err instanceof ConfigError) {
    return err.problems.map((message) => ({
      setting: SETTING_NAMES.find((name) => message.startsWith(`${name} `) || message.startsWith(`${name}:`)),
      message,
    }));
  }
  return [{ setting, message: describeError(err) }];
}

/** One line: `ROUTES_FILE /abs/routes.json:12:5: rules[2] "teams-high": match.severity[0]: must be one of …`. Redacted. */
export function describeConfigurationProblem(problem: ConfigurationProblem): string {
  if (problem.file !== undefined) return redact(formatConfigFileProblem(problem.file, problem, problem.setting));
  const named = problem.setting === undefined || problem.message.startsWith(problem.setting);
  return redact(named ? problem.message : `${problem.setting}: ${problem.message}`);
}

/** Configuration the app cannot start with; the message lists every problem, one a line. */
export class ConfigurationError extends Error {
  constructor(readonly problems: ConfigurationProblem[]) {
    super(
      `The configuration cannot be used (${problems.length} problem${problems.length === 1 ? '' : 's'}); fix it and start again:\n` +
        problems.map((p) => `  ${describeConfigurationProblem(p)}`).join('\n'),
    );
    this.name = 'ConfigurationError';
  }
}

let checked: ConfigurationProblem[] | undefined;

/** The problems of this process's configuration (process.env), checked once: what the app started with. */
export function configurationProblems(): ConfigurationProblem[] {
  checked ??= checkConfiguration();
  return checked;
}

/** The start-up check: throws `ConfigurationError` when this process's configuration cannot be used. */
export function assertConfiguration(): void {
  const problems = configurationProblems();
  if (problems.length > 0) throw new ConfigurationError(problems);
}
