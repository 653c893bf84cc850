/** Promise forms of grpc-js unary calls for tests: the answer, or the ServiceError as a value to assert on. */
import type { ServiceError } from '@grpc/grpc-js';

export const call = <Req, Res>(
  fn: (r: Req, cb: (err: ServiceError | null, res?: Res) => void) => unknown,
  r: Req,
): Promise<Res> => new Promise((resolve, reject) => fn(r, (err, res) => (err ? reject(err) : resolve(res!))));

export const failure = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: -1, details: 'succeeded' }),
    (e: ServiceError) => e,
  );
