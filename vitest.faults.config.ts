import { defineConfig } from 'vitest/config';

/**
 * `npm run test:faults`: the fault suite, one file whose scenarios each start a whole stack (stand-ins,
 * an on-disk Azurite, the app's services) and run the flow under a fault. Scenarios run one after the
 * other: some of them measure recovery times, which parallel files would only blur.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
  },
});
