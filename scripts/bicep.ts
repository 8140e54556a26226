/**
 * The Bicep CLI that checks infra/ (test/infra/bicep-compiler.test.ts): one already installed if it is
 * recent enough (BICEP_BIN, PATH, the Azure CLI's or azd's copy), else the pinned version that
 * `npm run bicep:install` fetches from NuGet with dotnet into .cache/bicep/<version>/.
 *
 * NuGet's Azure.Bicep.CommandLine.<platform> package holds the same self-contained `bicep` binary that
 * `az bicep install` and azd download; `dotnet restore` of a throwaway project with a PackageDownload
 * item fetches it without building anything and without touching the project.
 */
import { spawnSync } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The version CI fetches; an installed bicep older than this is passed over (its API catalog is older). */
export const BICEP_VERSION = '0.49.2';

/** The project root: the nearest folder above this file with a package.json (this runs from scripts/ and dist/scripts/). */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('no package.json above scripts/bicep');
    dir = parent;
  }
  return dir;
}

export const PROJECT_ROOT = projectRoot();
const EXE = process.platform === 'win32' ? 'bicep.exe' : 'bicep';

/** Where `npm run bicep:install` puts the pinned binary (ignored by git). */
export const CACHED_BICEP = join(PROJECT_ROOT, '.cache', 'bicep', BICEP_VERSION, EXE);

/** NuGet's runtime identifiers for the platforms the Bicep CLI ships for. */
const RUNTIMES: Record<string, string> = {
  'linux-x64': 'linux-x64',
  'linux-arm64': 'linux-arm64',
  'darwin-x64': 'osx-x64',
  'darwin-arm64': 'osx-arm64',
  'win32-x64': 'win-x64',
  'win32-arm64': 'win-arm64',
};

export interface BicepCli {
  path: string;
  version: string;
  /** Where it was found, for the test output. */
  source: string;
}

export interface BicepLookup {
  found?: BicepCli;
  /** The candidates that exist but were passed over, and why. */
  passedOver: string[];
}

/** `bicep --version` prints "Bicep CLI version 0.49.2 (b34271ac51)". */
function versionOf(path: string): string | undefined {
  const run = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 60_000 });
  return run.status === 0 ? /version (\d+\.\d+\.\d+)/.exec(run.stdout)?.[1] : undefined;
}

function atLeast(version: string, minimum: string): boolean {
  const [a, b] = [version, minimum].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) if (a![i]! !== b![i]!) return a![i]! > b![i]!;
  return true;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The candidates in the order a user would expect: theirs first, the project's cache last. */
function candidates(env: NodeJS.ProcessEnv): { path: string; source: string }[] {
  const list: { path: string; source: string }[] = [];
  if (env.BICEP_BIN) list.push({ path: resolve(env.BICEP_BIN), source: 'BICEP_BIN' });
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean))
    list.push({ path: join(dir, EXE), source: 'PATH' });
  list.push({
    path: join(env.AZURE_CONFIG_DIR ?? join(homedir(), '.azure'), 'bin', EXE),
    source: 'the Azure CLI (az bicep install)',
  });
  list.push({ path: join(env.AZD_CONFIG_DIR ?? join(homedir(), '.azd'), 'bin', EXE), source: 'azd' });
  list.push({ path: CACHED_BICEP, source: 'npm run bicep:install' });
  return list;
}

/** The first usable Bicep CLI, without installing anything. */
export function findBicep(env: NodeJS.ProcessEnv = process.env): BicepLookup {
  const passedOver: string[] = [];
  for (const { path, source } of candidates(env)) {
    if (!isExecutable(path)) {
      if (source === 'BICEP_BIN') passedOver.push(`BICEP_BIN=${path}: not an executable file`);
      continue;
    }
    const version = versionOf(path);
    if (!version) passedOver.push(`${path} (${source}): \`bicep --version\` failed`);
    else if (!atLeast(version, BICEP_VERSION))
      passedOver.push(`${path} (${source}): ${version}, older than ${BICEP_VERSION}`);
    else return { found: { path, version, source }, passedOver };
  }
  return { passedOver };
}

function dotnetMajor(): number {
  const run = spawnSync('dotnet', ['--version'], { encoding: 'utf8' });
  const major = run.status === 0 ? Number(run.stdout.trim().split('.')[0]) : NaN;
  if (!Number.isInteger(major)) {
    throw new Error(
      'dotnet (the .NET SDK) is needed to fetch Bicep from NuGet and was not found; or install Bicep yourself (az bicep install) or set BICEP_BIN',
    );
  }
  return major;
}

/** Fetches the pinned Bicep CLI into .cache/bicep/<version>/ unless it is already there; returns its path. */
export function installBicep(log: (line: string) => void = console.log): string {
  const shown = relative(PROJECT_ROOT, CACHED_BICEP);
  if (isExecutable(CACHED_BICEP) && versionOf(CACHED_BICEP) === BICEP_VERSION) {
    log(`bicep ${BICEP_VERSION} is already in ${shown}`);
    return CACHED_BICEP;
  }
  const runtime = RUNTIMES[`${process.platform}-${process.arch}`];
  if (!runtime)
    throw new Error(
      `NuGet has no Bicep CLI for ${process.platform}-${process.arch}; install one yourself and set BICEP_BIN`,
    );
  const pkg = `Azure.Bicep.CommandLine.${runtime}`;
  const major = dotnetMajor();

  // A scratch folder next to the destination, so the binary is moved in place (never half-copied).
  mkdirSync(dirname(CACHED_BICEP), { recursive: true });
  const work = mkdtempSync(join(dirname(dirname(CACHED_BICEP)), 'fetch-'));
  try {
    writeFileSync(
      join(work, 'fetch.csproj'),
      `<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net${major}.0</TargetFramework></PropertyGroup>
  <ItemGroup><PackageDownload Include="${pkg}" Version="[${BICEP_VERSION}]" /></ItemGroup>
</Project>
`,
    );
    log(`fetching ${pkg} ${BICEP_VERSION} from NuGet (dotnet restore, about 120 MB)…`);
    const started = Date.now();
    const restore = spawnSync(
      'dotnet',
      ['restore', join(work, 'fetch.csproj'), '--packages', join(work, 'packages'), '--nologo'],
      {
        stdio: 'inherit',
        env: { ...process.env, DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1' },
      },
    );
    if (restore.status !== 0)
      throw new Error(`dotnet restore of ${pkg} ${BICEP_VERSION} failed (exit ${restore.status ?? restore.signal})`);
    const fetched = join(work, 'packages', pkg.toLowerCase(), BICEP_VERSION, 'tools', EXE);
    if (!existsSync(fetched)) throw new Error(`${pkg} ${BICEP_VERSION} has no tools/${EXE}`);
    chmodSync(fetched, 0o755); // NuGet extracts without the execute bit
    renameSync(fetched, CACHED_BICEP);
    const version = versionOf(CACHED_BICEP);
    if (version !== BICEP_VERSION)
      throw new Error(`${shown} reports version ${version ?? '(none)'}, expected ${BICEP_VERSION}`);
    log(`bicep ${version} is in ${shown} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return CACHED_BICEP;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** `node dist/scripts/bicep.js install` fetches the pinned CLI; `which` tells which one the tests would use. */
function main(command: string | undefined): number {
  if (command === 'install') {
    installBicep();
    return 0;
  }
  if (command === 'which') {
    const { found, passedOver } = findBicep();
    for (const line of passedOver) console.log(`passed over: ${line}`);
    console.log(found ? `${found.path} (${found.version}, from ${found.source})` : `none: run npm run bicep:install`);
    return found ? 0 : 1;
  }
  console.error('usage: node dist/scripts/bicep.js install | which');
  return 2;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv[2]);
  } catch (err) {
    console.error(`bicep: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
