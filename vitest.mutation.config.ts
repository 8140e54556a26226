import { configDefaults, defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * The tests the mutation run (`npm run test:mutation`, StrykerJS) runs against each mutant: every test
 * that exercises the TypeScript sources in this process. Left out are the tests of something a mutant
 * cannot reach: `npm start` and the CLI (they run the built `dist/` in child processes), the local
 * host's process tests, and the Bicep checks. Also left out: the hostile configuration suite, which
 * re-imports the app in a fresh module graph inside each test. Stryker then counts every module-level
 * mutant (a table of blocked ranges, of retryable codes) as covered by those few tests alone and runs
 * it against them only, where it cannot be seen: hundreds of false survivors. Without it, module-level
 * mutants are static, which `ignoreStatic` leaves out (running each one would re-run every related
 * test file); unit tests hold those tables.
 */
export default mergeConfig(
  base,
  defineConfig({
    test: {
      exclude: [
        ...configDefaults.exclude,
        'test/faults/**',
        'test/e2e/**',
        'test/infra/**',
        'test/integration/cli/cli.test.ts',
        'test/integration/host-*.test.ts',
        'test/hostile/configuration.test.ts',
        // Runs the built stack:check in a child process.
        'test/unit/local/local-stack.test.ts',
        // The benchmark's latency proxy: no mutated module, and its worker-thread variant runs the built dist/.
        'test/unit/bench/latency-proxy.test.ts',
      ],
    },
  }),
);
