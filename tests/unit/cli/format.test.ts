/** Durations as the CLI and the benches print them: seconds under a minute, whole minutes and seconds above. */
import { duration } from '../../../cli/format';

test.each([
  [0.04, '0.0s'],
  [12.34, '12.3s'],
  [59.94, '59.9s'],
  [59.96, '1m00s'],
  [119.6, '2m00s'],
  [126.2, '2m06s'],
  [1266, '21m06s'],
])('%s s reads %s', (seconds, text) => {
  expect(duration(seconds)).toBe(text);
});
