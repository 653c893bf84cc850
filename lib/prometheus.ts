/**
 * A small typed client of Prometheus' HTTP API (`/api/v1/query`, instant vectors only: all that canary analysis and
 * the tests ask), with runtime validation of the answers. Errors name the query and what Prometheus said.
 */
import { z } from 'zod';

const sample = z.object({
  metric: z.record(z.string(), z.string()),
  value: z.tuple([z.number(), z.string()]),
});

const answer = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('success'),
    data: z.object({ resultType: z.string(), result: z.array(z.unknown()) }),
    warnings: z.array(z.string()).optional(),
  }),
  z.object({ status: z.literal('error'), errorType: z.string(), error: z.string() }),
]);

export interface VectorSample {
  labels: Record<string, string>;
  /** NaN and ±Inf as Prometheus writes them ("NaN", "+Inf"). */
  value: number;
}

export class PrometheusError extends Error {
  override readonly name = 'PrometheusError';
}

const parseValue = (v: string): number => (v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v));

export class PrometheusClient {
  constructor(
    readonly url: string,
    private readonly timeoutMs = 10_000,
  ) {}

  /** An instant query evaluated at `atMs` (default: now). The expression must give an instant vector. */
  async query(expr: string, atMs?: number): Promise<VectorSample[]> {
    const body = new URLSearchParams({ query: expr });
    if (atMs !== undefined) body.set('time', (atMs / 1000).toFixed(3));
    let res: Response;
    try {
      res = await fetch(`${this.url}/api/v1/query`, {
        method: 'POST',
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new PrometheusError(`Prometheus at ${this.url} is unreachable: ${(err as Error).message}`);
    }
    const text = await res.text();
    let parsed: z.infer<typeof answer>;
    try {
      parsed = answer.parse(JSON.parse(text));
    } catch {
      throw new PrometheusError(`Prometheus at ${this.url} answered HTTP ${res.status}: ${text.slice(0, 300)}`);
    }
    if (parsed.status === 'error')
      throw new PrometheusError(`Prometheus refused ${JSON.stringify(expr)}: ${parsed.errorType}: ${parsed.error}`);
    if (parsed.data.resultType !== 'vector')
      throw new PrometheusError(`${JSON.stringify(expr)} gave a ${parsed.data.resultType}, not an instant vector`);
    return parsed.data.result.map((r) => {
      const s = sample.parse(r);
      return { labels: s.metric, value: parseValue(s.value[1]) };
    });
  }
}

/** A label value inside double quotes in PromQL. */
export const promString = (v: string): string => JSON.stringify(v);

/** A regex alternative of literal values, e.g. version=~"7|8" (regex metacharacters escaped). */
export const promAlternatives = (values: readonly string[]): string =>
  promString(values.map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'));
