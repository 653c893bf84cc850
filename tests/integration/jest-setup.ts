// Integration tests train real models and wait on real servers.
jest.setTimeout(600_000);
