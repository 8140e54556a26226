import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Copies `Values` from local.settings.json into the environment, as `func start` does: a variable
 * already set in the environment wins. Returns the names it set.
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
  if (json.IsEncrypted === true) throw new Error('local.settings.json is encrypted; this host reads only plain settings.');
  const applied: string[] = [];
  for (const [name, value] of Object.entries(json.Values ?? {})) {
    if (env[name] !== undefined) continue;
    env[name] = typeof value === 'string' ? value : JSON.stringify(value);
    applied.push(name);
  }
  return applied;
}

/**
 * Resolves `%NAME%` references in a binding string from app settings, as the host does for every
 * binding property. A missing setting is a start-up error naming the function and the setting.
 */
export function resolveAppSettings(value: string, functionName: string, property: string, env: NodeJS.ProcessEnv = process.env): string {
  return value.replace(/%([^%]+)%/g, (_whole, name: string) => {
    const setting = env[name];
    if (setting === undefined) {
      throw new Error(`Function '${functionName}': '${property}' refers to app setting '${name}' (%${name}%), which is not set.`);
    }
    return setting;
  });
}
