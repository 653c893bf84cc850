/**
 * The command-line flags of issue 12's serving and simulator changes: `recsys serve --environment` refuses a name
 * that cannot be a key segment before it loads anything, and `recsys simulate --scenario/--shift` are checked naming
 * the flag and the value.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { scenarioOf } from '../../../cli/commands/simulate';

const RECSYS = path.resolve(__dirname, '..', '..', '..', 'cli', 'bin', 'recsys');

test('recsys serve --environment must be 1 to 32 of [a-z0-9-], and says so naming the flag and the value', async () => {
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = execFile(
      RECSYS,
      ['serve', '--model', 'm', '--port', '0', '--metrics-port', '0', '--environment', 'Prod/1'],
      { timeout: 60_000 },
      (_err, _stdout, stderr) => resolve({ code: child.exitCode, stderr }),
    );
  });
  expect(code).toBe(1);
  expect(stderr).toContain(`recsys: --environment must be 1 to 32 lowercase letters, digits or '-', got "Prod/1"`);
});

test('recsys simulate --scenario and --shift', () => {
  expect(scenarioOf({})).toBeUndefined();
  expect(scenarioOf({ scenario: 'degrade' })).toEqual({ name: 'degrade', shift: 0.5 });
  expect(scenarioOf({ scenario: 'new-items', shift: 1 })).toEqual({ name: 'new-items', shift: 1 });
  expect(() => scenarioOf({ scenario: 'drift' })).toThrow(
    '--scenario must be one of popularity-shift, new-items, user-mix, degrade, got "drift"',
  );
  expect(() => scenarioOf({ scenario: 'user-mix', shift: 0 })).toThrow('--shift must be a number in (0, 1], got 0');
  expect(() => scenarioOf({ scenario: 'user-mix', shift: 1.2 })).toThrow('--shift must be a number in (0, 1], got 1.2');
  expect(() => scenarioOf({ shift: 0.3 })).toThrow('--shift 0.3 needs --scenario');
});
