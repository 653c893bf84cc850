/**
 * Three projects: unit tests of our own logic, workflow tests (mocked activities on Temporal's time-skipping test
 * server, no stack), and integration tests against the real local stack.
 */
const transform = { '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' } }] };
module.exports = {
  projects: [
    { displayName: 'unit', testMatch: ['<rootDir>/tests/unit/**/*.test.ts'], transform, testEnvironment: 'node' },
    {
      displayName: 'workflows',
      testMatch: ['<rootDir>/tests/workflows/**/*.test.ts'],
      transform,
      testEnvironment: 'node',
      setupFilesAfterEnv: ['<rootDir>/tests/workflows/jest-setup.ts'],
    },
    {
      displayName: 'integration',
      testMatch: ['<rootDir>/tests/integration/**/*.test.ts'],
      transform,
      testEnvironment: 'node',
      globalSetup: '<rootDir>/tests/integration/global-setup.ts',
      setupFiles: ['<rootDir>/tests/integration/jest-realm.ts'],
      slowTestThreshold: 120,
      setupFilesAfterEnv: ['<rootDir>/tests/integration/jest-setup.ts'],
    },
  ],
};
