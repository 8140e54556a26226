import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { INFRA_DIR, PROJECT_ROOT } from '../support/bicep.js';

/**
 * Every HTTP function's auth level is a recorded decision: the table in infra/README.md lists each
 * function with its endpoint and level, and an anonymous one says how the handler authenticates.
 * Adding an endpoint, or changing a level, fails here until the table says why.
 */

interface HttpFunction {
  file: string;
  name: string;
  authLevel?: string;
  endpoint: string;
}

function httpFunctions(): HttpFunction[] {
  const dir = join(PROJECT_ROOT, 'functions');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .flatMap((file) =>
      [...readFileSync(join(dir, file), 'utf8').matchAll(/app\.http\(\s*'(\w+)',\s*\{([\s\S]*?)\}\s*\)/g)].map((m) => {
        const options = m[2]!;
        const methods = [
          ...(options.match(/methods:\s*\[([^\]]*)\]/)?.[1] ?? "'GET', 'POST'").matchAll(/'(\w+)'/g),
        ].map((x) => x[1]!);
        const route = options.match(/route:\s*'([^']*)'/)?.[1] ?? m[1]!;
        return {
          file,
          name: m[1]!,
          authLevel: options.match(/authLevel:\s*'(\w+)'/)?.[1],
          endpoint: `${methods.join(', ')} /api/${route}`,
        };
      }),
    );
}

interface Row {
  name: string;
  endpoint: string;
  authLevel: string;
  reason: string;
}

function documentedTable(): Row[] {
  const readme = readFileSync(join(INFRA_DIR, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('HTTP endpoints and their auth levels'));
  if (!section) throw new Error("infra/README.md has no '## HTTP endpoints and their auth levels' section");
  return [...section.matchAll(/^\| `(\w+)` \| ([^|]+) \| `(\w+)` \| ([^|]*) \|$/gm)].map((m) => ({
    name: m[1]!,
    endpoint: m[2]!.trim(),
    authLevel: m[3]!,
    reason: m[4]!.trim(),
  }));
}

describe('HTTP auth levels', () => {
  const functions = httpFunctions();
  const table = documentedTable();

  it('finds the HTTP functions and the documented table', () => {
    expect(functions.length).toBeGreaterThan(5);
    expect(table.length).toBeGreaterThan(5);
  });

  it('every HTTP function states its auth level (the library defaults to anonymous)', () => {
    expect(functions.filter((f) => !f.authLevel).map((f) => `${f.file}: ${f.name}`)).toEqual([]);
  });

  it('every HTTP function is in the table with its endpoint and auth level', () => {
    const problems = functions.flatMap((f) => {
      const row = table.find((r) => r.name === f.name);
      if (!row)
        return [`${f.file}: ${f.name} (${f.endpoint}, ${f.authLevel}) is not in infra/README.md's auth-level table`];
      return [
        ...(row.authLevel === f.authLevel
          ? []
          : [`${f.name}: authLevel '${f.authLevel}' in ${f.file}, '${row.authLevel}' in the table`]),
        ...(row.endpoint === f.endpoint
          ? []
          : [`${f.name}: '${f.endpoint}' in ${f.file}, '${row.endpoint}' in the table`]),
      ];
    });
    expect(problems).toEqual([]);
    expect(
      table.filter((r) => !functions.some((f) => f.name === r.name)).map((r) => r.name),
      'table rows for functions that do not exist',
    ).toEqual([]);
  });

  it('only functions that authenticate their callers themselves are anonymous; none uses the admin (master) key', () => {
    const anonymous = functions
      .filter((f) => f.authLevel === 'anonymous')
      .map((f) => f.name)
      .sort();
    expect(anonymous).toEqual(['health', 'listIncidents', 'pushIncidents', 'updateIncident']);
    for (const row of table.filter((r) => r.authLevel === 'anonymous'))
      expect(row.reason.length, `${row.name} says how it authenticates`).toBeGreaterThan(40);
    expect(
      functions
        .filter((f) => f.authLevel !== 'anonymous' && f.authLevel !== 'function')
        .map((f) => `${f.name}: ${f.authLevel}`),
    ).toEqual([]);
  });
});
