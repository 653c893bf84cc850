// A test waits for workflows that run on a time-skipping server: seconds, not minutes (the server's JVM starts and
// the workflow bundle builds once per file, in beforeAll).
jest.setTimeout(30_000);
