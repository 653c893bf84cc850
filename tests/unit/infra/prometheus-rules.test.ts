/**
 * The recording rules and the stack's Prometheus configuration, checked by Prometheus' own promtool (installed with
 * Debian's prometheus package by `make setup`): the rules compute what the operator reads, on series that include a
 * replica restart.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const DIR = path.resolve(__dirname, '..', '..', '..', 'infra', 'prometheus');

const promtool = (...args: string[]) => execFileSync('promtool', args, { cwd: DIR, encoding: 'utf8' });

test('the rules file checks', () => {
  expect(promtool('check', 'rules', 'rules.yml')).toMatch(/SUCCESS: 6 rules found/);
});

test('the recording rules give the rate, error ratio, p99 and click-through of a version across a restart', () => {
  expect(promtool('test', 'rules', 'rules.test.yml')).toMatch(/SUCCESS/);
});
