import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../support/bicep.js';

/**
 * .funcignore decides what azd (and Core Tools) put in the deployment package: what Azure runs
 * (dist/, host.json, package.json, the production packages) and nothing else — no sources, tests,
 * local stack, local settings or development packages.
 */

interface Rule {
  negated: boolean;
  directoryOnly: boolean;
  regex: RegExp;
}

/** A .funcignore (gitignore syntax) as a predicate on project-relative file paths. */
function ignoreRules(text: string): (path: string) => boolean {
  const rules: Rule[] = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((line) => {
      const negated = line.startsWith('!');
      let pattern = negated ? line.slice(1) : line;
      const directoryOnly = pattern.endsWith('/');
      if (directoryOnly) pattern = pattern.slice(0, -1);
      // A pattern with a slash is relative to the root; one without matches a name at any depth.
      const anchored = pattern.includes('/');
      pattern = pattern.replace(/^\//, '');
      const body = pattern
        .split(/(\*\*|\*|\?)/)
        .map((part) =>
          part === '**'
            ? '.*'
            : part === '*'
              ? '[^/]*'
              : part === '?'
                ? '[^/]'
                : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
        )
        .join('');
      return { negated, directoryOnly, regex: new RegExp(`${anchored ? '^' : '(^|/)'}${body}$`) };
    });
  const matches = (path: string, isDirectory: boolean) =>
    rules.reduce(
      (ignored, rule) => ((!rule.directoryOnly || isDirectory) && rule.regex.test(path) ? !rule.negated : ignored),
      false,
    );
  // As in git, nothing inside an ignored directory can be included again.
  return (path) => {
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) if (matches(segments.slice(0, i).join('/'), true)) return true;
    return matches(path, false);
  };
}

const read = (name: string) => readFileSync(join(PROJECT_ROOT, name), 'utf8');
const packageJson = JSON.parse(read('package.json')) as { main: string };
const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { dev?: boolean }> };
const ignored = ignoreRules(read('.funcignore'));

/** Installed packages (top-level and nested) by whether package-lock.json marks them development-only. */
const installed = Object.entries(lock.packages).filter(([path]) => path.startsWith('node_modules/'));
const production = installed.filter(([, p]) => !p.dev).map(([path]) => path);
const development = installed.filter(([, p]) => p.dev).map(([path]) => path);

describe('deployment package (.funcignore)', () => {
  it('keeps what Azure runs', () => {
    const kept = [
      'host.json',
      'package.json',
      'routes.json',
      'dist/functions/health.js',
      'dist/shared/config.js',
      'dist/shared/destinations/queue.js',
    ];
    expect(kept.filter(ignored), 'files the app needs that would be left out').toEqual([]);
    expect(packageJson.main, 'package.json main points into dist/').toBe('dist/functions/*.js');
  });

  it('keeps every production package and leaves out every development one (package-lock.json)', () => {
    expect(production.length).toBeGreaterThan(10);
    const dropped = production.filter((p) => ignored(`${p}/package.json`));
    expect(
      dropped,
      `production packages left out: add '!/${dropped[0] ?? ''}/' (and its scope) to .funcignore`,
    ).toEqual([]);
    const shipped = development.filter((p) => !ignored(`${p}/package.json`));
    expect(shipped, `development packages shipped: remove their '!/…/' line from .funcignore`).toEqual([]);
    expect(ignored('node_modules/.bin/tsc')).toBe(true);
  });

  it('leaves out sources, tests, the local stack, infra and local settings', () => {
    const dropped = [
      'functions/health.ts',
      'shared/config.ts',
      'cli/doctor.ts',
      'local/stack.ts',
      'dist/local/stack.js',
      'dist/cli/doctor.js',
      'dist/bench/run.js',
      'dist/functions/health.js.map',
      'test/unit/config.test.ts',
      'bench/run.ts',
      'infra/main.bicep',
      '.local/stack.json',
      '.azure/dev/.env',
      'local.settings.json',
      'tsconfig.json',
      'vitest.config.ts',
    ];
    expect(
      dropped.filter((p) => !ignored(p)),
      'files that would be deployed',
    ).toEqual([]);
  });

  it('builds locally: azure.yaml turns remote build off, consistent with node_modules being shipped', () => {
    expect(ignored('node_modules/zod/package.json')).toBe(false);
    expect(read('azure.yaml')).toMatch(/^ {4}host: function\n {4}remoteBuild: false$/m);
  });
});
