/** The HTTP endpoint Prometheus scrapes: GET /metrics on 127.0.0.1 (like the gRPC server, never on all interfaces). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { messageOf } from './errors';
import { HOST } from './server';
import type { ServingMetrics } from './metrics';

export const DEFAULT_METRICS_PORT = 9464; // the default of OpenTelemetry's Prometheus exporter, a familiar one

export interface MetricsServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** `port` 0 picks a free one. */
export async function startMetricsServer(metrics: ServingMetrics, port: number): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${messageOf(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new Error(`cannot serve metrics on ${HOST}:${port} (see --metrics-port): ${messageOf(err)}`)),
    );
    server.listen(port, HOST, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    url: `http://${HOST}:${bound}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
