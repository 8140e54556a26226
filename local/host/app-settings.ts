import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Copies `Values` from local.settings.json into the environment, as `func start` does: a variable
 * already set in the environment wins, unless it is empty, which counts as unset
 * (azure-functions-core-tools StartHostAction.cs `UpdateEnvironmentVariables`: `string.IsNullOrEmpty`).
 * Returns the names it set.
 */
export function applyLocalSettings(appDir: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const path = join(appDir, 'local.settings.json');
  if (!existsSync(path)) return [];
  let json: { IsEncrypted?: unknown; Values?: Record<string, unknown> };
  try {
    json = JSON.parse(readFileSync(path, 'utf8')) as typeof json;
  } catch (error) {
    throw new Error(`local.settings.json is not valid JSON: ${(error as Error).message}`);
  }
  if (json.IsEncrypted === true)
    throw new Error('local.settings.json is encrypted; this host reads only plain settings.');
  const applied: string[] = [];
  for (const [name, value] of Object.entries(json.Values ?? {})) {
    if (env[name] !== undefined && env[name] !== '') continue;
    env[name] = typeof value === 'string' ? value : JSON.stringify(value);
    applied.push(name);
  }
  return applied;
}

/**
 * Resolves `%NAME%` references in a binding string from app settings, as the host does for every
 * binding property. A missing setting is a start-up error naming the function and the setting.
 */
/**
 * A binding property's `%SETTING%` that no app setting provides: the real host fails that function's
 * indexing with this message (azure-webjobs-sdk src/Microsoft.Azure.WebJobs.Host/NameResolverExtensions.cs,
 * "'%X%' does not resolve to a value.") and puts only that function in error.
 */
export class UnresolvedSettingError extends Error {
  constructor(
    readonly functionName: string,
    readonly setting: string,
    property: string,
  ) {
    super(
      `Microsoft.Azure.WebJobs.Host: Error indexing method 'Functions.${functionName}'. Microsoft.Azure.WebJobs.Host: '%${setting}%' does not resolve to a value. ('${property}' refers to app setting '${setting}', which is not set.)`,
    );
    this.name = 'UnresolvedSettingError';
  }
}

export function resolveAppSettings(
  value: string,
  functionName: string,
  property: string,
  env: NodeJS.ProcessEnv = process.env,
): string {
  return value.replace(/%([^%]+)%/g, (_whole, name: string) => {
    const setting = env[name];
    if (setting === undefined) throw new UnresolvedSettingError(functionName, name, property);
    return setting;
  });
}
