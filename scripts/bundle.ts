/**
 * The deployed app as Azure loads it: each functions/*.ts bundled by esbuild into dist/functions/<name>.js
 * (the files package.json `main` names), with what they share (shared/ and the Azure SDKs) split into
 * chunks in dist/functions/chunks/ that every entry point imports, so that a module's state
 * (services, caches) exists once, as it does unbundled. `npm run build` runs it after tsc, which
 * compiles everything else (the CLI, the local stack, the bench); azd runs `npm run build` before it
 * zips the package, so `func start`, `npm start` and Azure all run these same files.
 *
 * Why: a cold start on Flex Consumption imports every function file before the first invocation, and
 * Node spends most of that resolving, reading and compiling the SDKs' hundreds of small files
 * (`npm run bench`, figure 6). `@azure/functions` is bundled too: imported as a package, its
 * CommonJS file went through Node's CommonJS export lexer on every start (about 25 ms, a bare
 * `node`'s whole start-up). Only `@azure/functions-core` stays outside: it is no package but a
 * module the language worker provides by intercepting `require` (azure-functions-nodejs-worker
 * src/setupCoreModule.ts; "a built-in module that ships directly in Azure, not through npm", the
 * library's maintainers in Azure/azure-functions-nodejs-library#201), which the bundle's `require`
 * (the banner below) reaches. The code is minified but for its names, which stack traces keep.
 */
import { build, formatMessages, type Metafile } from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the bundle imports at run time besides Node's built-ins: only the worker's own module, no package. */
export const BUNDLE_EXTERNAL = ['@azure/functions-core'];

/** Where the bundle goes: package.json `main` is `dist/functions/*.js`, which the chunks folder does not match. */
export const BUNDLE_DIR = join('dist', 'functions');

export async function bundleFunctions(root: string, outdir = join(root, BUNDLE_DIR)): Promise<Metafile> {
  const entryPoints = readdirSync(join(root, 'functions'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(root, 'functions', f));
  rmSync(outdir, { recursive: true, force: true });
  const result = await build({
    entryPoints,
    outdir,
    bundle: true,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Packages with both, such as jsonc-parser, whose CommonJS (UMD) build requires files by computed names.
    mainFields: ['module', 'main'],
    external: BUNDLE_EXTERNAL,
    // Less for V8 to parse at start-up; identifiers stay, so stack traces in logs keep their function
    // names. Maps for debugging locally (.funcignore leaves them out of the package, as tsc's).
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: true,
    // CommonJS packages in an ES module bundle (msal-node's jsonwebtoken, for one) call require() for
    // Node's built-ins, which an ES module does not have.
    banner: {
      js: "import { createRequire as __bundleCreateRequire } from 'node:module'; const require = __bundleCreateRequire(import.meta.url);",
    },
    metafile: true,
    logLevel: 'silent',
  });
  // A warning is a require() or import() esbuild could not follow: it would fail in Azure, where the
  // package holds no node_modules but BUNDLE_EXTERNAL.
  if (result.warnings.length > 0) {
    const messages = await formatMessages(result.warnings, { kind: 'warning' });
    throw new Error(`the bundle leaves modules to run time:\n${messages.join('\n')}`);
  }
  return result.metafile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const started = performance.now();
  const metafile = await bundleFunctions(root);
  const outputs = Object.entries(metafile.outputs).filter(([file]) => file.endsWith('.js'));
  const bytes = outputs.reduce((sum, [, output]) => sum + output.bytes, 0);
  console.log(
    `bundled functions/ into ${BUNDLE_DIR}: ${outputs.length} files, ${(bytes / 1e6).toFixed(1)} MB, ${Math.round(performance.now() - started)} ms`,
  );
}
