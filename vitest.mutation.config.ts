import { configDefaults, defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * The tests the mutation run (`npm run test:mutation`, StrykerJS) runs against each mutant: every test
 * that exercises the TypeScript sources in this process. Left out are the tests of something a mutant
 * cannot reach: `npm start` and the CLI (they run the built `dist/` in child processes), the local
 * host's process tests, and the Bicep checks.
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
        'test/integration/cli.test.ts',
        'test/integration/host-*.test.ts',
      ],
    },
  }),
);
