import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Tests start real brokers, databases and child processes on a shared 2-core machine.
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
