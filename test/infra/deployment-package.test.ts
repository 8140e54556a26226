import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { entryPointFiles } from '../../local/host/app-loader.js';
import type { Metafile } from 'esbuild';
import { BUNDLE_EXTERNAL, bundleFunctions } from '../../scripts/bundle.js';
import { deploymentFiles, ignoreRules } from '../../scripts/deployment-package.js';
import { PROJECT_ROOT } from '../support/bicep.js';

/**
 * .funcignore decides what azd (and Core Tools) put in the deployment package: what Azure runs
 * (the bundled dist/functions/, host.json, package.json, any package the bundle imports) and nothing
 * else — no sources, tests, local stack, local settings, tool caches or packages the bundle holds.
 */

const read = (name: string) => readFileSync(join(PROJECT_ROOT, name), 'utf8');
const packageJson = JSON.parse(read('package.json')) as { main: string };
const lock = JSON.parse(read('package-lock.json')) as {
  packages: Record<string, { dev?: boolean; dependencies?: Record<string, string> }>;
};
const ignored = ignoreRules(read('.funcignore'));

/** Where Node finds `name` from the package installed at `from` (its own node_modules, then its parents'). */
function resolvedIn(from: string, name: string): string {
  for (let dir = from; ; dir = dir.slice(0, Math.max(0, dir.lastIndexOf('/node_modules/')))) {
    const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
    if (lock.packages[candidate]) return candidate;
    if (!dir) throw new Error(`package-lock.json has no ${name} for ${from || 'the project'}`);
  }
}

/** The packages the bundle imports at run time, with everything they depend on. */
function runtimePackages(): Set<string> {
  const found = new Set<string>();
  const visit = (path: string) => {
    if (found.has(path)) return;
    found.add(path);
    for (const dependency of Object.keys(lock.packages[path]?.dependencies ?? {})) visit(resolvedIn(path, dependency));
  };
  // @azure/functions-core is no package: the language worker provides it.
  for (const name of BUNDLE_EXTERNAL.filter((n) => n !== '@azure/functions-core')) visit(resolvedIn('', name));
  return found;
}

/** The output files a cold start reads: the entry points and what they import statically, transitively. */
function filesReadAtStart(metafile: Metafile): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const i of metafile.outputs[file]!.imports) if (!i.external && i.kind === 'import-statement') visit(i.path);
  };
  // esbuild names a dynamic import's target an entry point too: only functions/*.ts are the host's.
  for (const [file, output] of Object.entries(metafile.outputs))
    if (output.entryPoint?.startsWith('functions/')) visit(file);
  return [...seen];
}

const installed = Object.keys(lock.packages).filter((path) => path.startsWith('node_modules/'));

describe('deployment package (.funcignore)', () => {
  it('keeps what Azure runs', () => {
    const kept = [
      'host.json',
      'package.json',
      'routes.json',
      'dist/functions/health.js',
      'dist/functions/chunks/chunk-ABCDEFGH.js',
    ];
    expect(
      kept.filter((p) => ignored(p)),
      'files the app needs that would be left out',
    ).toEqual([]);
    expect(packageJson.main, 'package.json main points into dist/').toBe('dist/functions/*.js');
  });

  it('keeps the packages the bundle imports and leaves out every other (package-lock.json)', () => {
    const needed = runtimePackages();
    const dropped = [...needed].filter((p) => ignored(`${p}/package.json`));
    expect(
      dropped,
      `packages the bundle imports left out: .funcignore must keep /${dropped[0] ?? ''}/ (and its scope)`,
    ).toEqual([]);
    const shipped = installed.filter((p) => !needed.has(p) && !ignored(`${p}/package.json`));
    expect(
      shipped,
      `packages the bundle holds or never uses, shipped: remove their '!/…/' line from .funcignore`,
    ).toEqual([]);
    expect(ignored('node_modules/.bin/tsc')).toBe(true);
  });

  it('leaves out sources, tests, the local stack, infra and local settings', () => {
    const dropped = [
      'functions/health.ts',
      'shared/config/config.ts',
      'cli/doctor.ts',
      'local/stack.ts',
      'dist/local/stack.js',
      'dist/cli/doctor.js',
      'dist/bench/run.js',
      'dist/shared/config/config.js',
      'dist/scripts/bundle.js',
      'dist/functions/health.js.map',
      '.cache/bicep/0.49.2/bicep',
      '.stryker-tmp/sandbox-1/package.json',
      'reports/mutation/mutation.json',
      'test/unit/config/config.test.ts',
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

  it('builds locally: azure.yaml turns remote build off, consistent with the bundle and its package being shipped', () => {
    expect(ignored('node_modules/@azure/functions/package.json'), '@azure/functions is in the bundle').toBe(true);
    expect(ignored('node_modules/zod/package.json'), 'zod is in the bundle').toBe(true);
    expect(read('azure.yaml')).toMatch(/^ {4}host: function\n {4}remoteBuild: false$/m);
  });

  it('bundles: what the functions import at run time is Node built-ins and BUNDLE_EXTERNAL, nothing else', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'defender-relay-bundle-'));
    try {
      const metafile = await bundleFunctions(PROJECT_ROOT, dir);
      const external = Object.values(metafile.outputs).flatMap((output) =>
        output.imports.filter((i) => i.external).map((i) => i.path),
      );
      const allowed = new Set([...builtinModules.map((m) => `node:${m}`), ...builtinModules, ...BUNDLE_EXTERNAL]);
      expect(external.length).toBeGreaterThan(0);
      expect([...new Set(external)].filter((path) => !allowed.has(path))).toEqual([]);
      // What a cold start reads: the SDKs that load on first use (Identity with MSAL, Blob) are in
      // chunks reached only through import(), never through a static import.
      const loadedAtStart = filesReadAtStart(metafile)
        .flatMap((file) => Object.keys(metafile.outputs[file]!.inputs))
        .join('\n');
      expect(loadedAtStart).toContain('node_modules/@azure/functions/');
      expect(loadedAtStart).toContain('node_modules/@azure/storage-queue/');
      expect(loadedAtStart).not.toContain('node_modules/@azure/identity/');
      expect(loadedAtStart).not.toContain('node_modules/@azure/msal-node/');
      expect(loadedAtStart).not.toContain('node_modules/@azure/storage-blob/');
      // The Logs Ingestion client loads with the first Sentinel delivery (shared/route/destinations/sentinel.ts).
      expect(loadedAtStart).not.toContain('node_modules/@azure/monitor-ingestion/');
      // OpenTelemetry: only the API (its no-ops) without a connection string; the distro, the exporter,
      // the SDK and the Functions instrumentation load with telemetry.ts's import() when one is set.
      expect(loadedAtStart).toContain('node_modules/@opentelemetry/api/');
      for (const lazy of [
        '@azure/monitor-opentelemetry/',
        '@azure/monitor-opentelemetry-exporter/',
        '@azure/functions-opentelemetry-instrumentation/',
        '@opentelemetry/sdk-',
        '@opentelemetry/instrumentation',
      ])
        expect(loadedAtStart).not.toContain(lazy);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // npm test builds dist/ first: this reads the bundle `npm run build` made.
  it("loads on its own as the Node worker loads it: every function file, away from node_modules, registers through the worker's require hook", () => {
    const dir = mkdtempSync(join(tmpdir(), 'defender-relay-package-'));
    try {
      for (const file of deploymentFiles(PROJECT_ROOT).files) {
        mkdirSync(join(dir, dirname(file)), { recursive: true });
        cpSync(join(PROJECT_ROOT, file), join(dir, file));
      }
      const urls = entryPointFiles(dir).map((file) => pathToFileURL(file).href);
      expect(urls.length).toBeGreaterThan(10);
      // The worker provides @azure/functions-core with a proxy on Module.prototype.require
      // (azure-functions-nodejs-worker src/setupCoreModule.ts); the bundled library must reach it.
      const coreApi = pathToFileURL(join(PROJECT_ROOT, 'dist', 'local', 'host', 'core-api.js')).href;
      const worker = join(dir, 'worker.mjs');
      writeFileSync(
        worker,
        `import Module from 'node:module';
import { createCoreApi } from ${JSON.stringify(coreApi)};
const { api, registry } = createCoreApi();
Module.prototype.require = new Proxy(Module.prototype.require, {
  apply: (target, self, args) => (args[0] === '@azure/functions-core' ? api : Reflect.apply(target, self, args)),
});
process.on('exit', () => {
  const model = registry.programmingModel();
  process.stdout.write(JSON.stringify({ model: model && { name: model.name, version: model.version }, functions: [...registry.functions.keys()] }));
});
`,
      );
      const run = spawnSync(
        process.execPath,
        [
          '--import',
          pathToFileURL(worker).href,
          '--input-type=module',
          '-e',
          `for (const u of ${JSON.stringify(urls)}) await import(u);`,
        ],
        { cwd: dir, encoding: 'utf8' },
      );
      expect(run.stderr.trim(), 'errors importing the package').toBe('');
      expect(run.status).toBe(0);
      const loaded = JSON.parse(run.stdout) as { model?: { name: string; version: string }; functions: string[] };
      const library = JSON.parse(read('node_modules/@azure/functions/package.json')) as { version: string };
      expect(loaded.model).toEqual({ name: '@azure/functions', version: library.version });
      // Every function the sources register (app.http('name', …), app.storageQueue(…), app.timer(…)).
      const declared = readdirSync(join(PROJECT_ROOT, 'functions'))
        .filter((f) => f.endsWith('.ts'))
        .flatMap((f) => [...read(`functions/${f}`).matchAll(/\bapp\.\w+\(\s*'(\w+)'/g)].map((m) => m[1]!));
      expect(declared.length).toBeGreaterThan(10);
      expect(loaded.functions.sort()).toEqual(declared.sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
