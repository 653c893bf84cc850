/**
 * `recsys recommend`: one Recommend call against a running server, over gRPC or (`--http`) its HTTP/JSON API, printed
 * as a table with its lineage and the history the items were ranked with. Without `--history` the server picks the
 * history: the user's recent events in the online store, else their history in the model's dataset, else none
 * (popularity); `History source:` says which.
 */
import type { Command } from 'commander';
import { recommend, recommenderClient } from '../../serving/client';
import { DEFAULT_HTTP_URL, httpRecommend } from '../../serving/http/client';
import type { RecommendRequest, RecommendResponse__Output } from '../../serving/proto';
import { table } from '../format';

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

const SOURCES: Record<string, string> = {
  HISTORY_SOURCE_REQUEST: 'request',
  HISTORY_SOURCE_ONLINE_STORE: 'online store',
  HISTORY_SOURCE_DATASET: 'dataset (as of training)',
  HISTORY_SOURCE_NONE: 'none (popularity)',
};

/** `online store`, `dataset (as of training)`, ...: where the history of a response came from, in words. */
export function historySourceText(res: Pick<RecommendResponse__Output, 'history_source' | 'online_store_degraded'>) {
  const text = SOURCES[res.history_source] ?? res.history_source;
  return res.online_store_degraded ? `${text}; the online store did not answer in time` : text;
}

/** `--http` alone: the default URL; `--http <url>`: that one; absent: gRPC. */
export const httpUrlOf = (http: string | boolean | undefined): string | undefined =>
  http === undefined || http === false ? undefined : http === true ? DEFAULT_HTTP_URL : http;

export function registerRecommendCommand(program: Command): void {
  program
    .command('recommend')
    .description('ask a running `recsys serve` for recommendations (gRPC, or its HTTP/JSON API with --http)')
    .requiredOption('--user <id>', 'user id')
    .option(
      '--history <items>',
      'recent item ids, comma-separated, oldest first (default: none, the server uses the online store)',
      list,
      [] as string[],
    )
    .option('--exclude <items>', 'item ids never to return, comma-separated', list, [] as string[])
    .option('--k <n>', 'how many items', (v) => Number(v), 10)
    .option('--address <host:port>', 'gRPC server address', '127.0.0.1:50051')
    .option('--http [url]', `call the HTTP/JSON API instead of gRPC (default URL ${DEFAULT_HTTP_URL})`)
    .option('--timeout <ms>', 'deadline of the call', (v) => Number(v), 10_000)
    .option('--json', 'print the response as JSON', false)
    .action(
      async (opts: {
        user: string;
        history: string[];
        exclude: string[];
        k: number;
        address: string;
        http?: string | boolean;
        timeout: number;
        json: boolean;
      }) => {
        if (!Number.isInteger(opts.k)) throw new Error(`--k must be an integer, got ${String(opts.k)}`);
        const req: RecommendRequest = {
          user_id: opts.user,
          history: opts.history.map((item_id) => ({ item_id, timestamp_ms: 0 })),
          k: opts.k,
          exclude_item_ids: opts.exclude,
        };
        const url = httpUrlOf(opts.http);
        let res: RecommendResponse__Output;
        if (url) res = (await httpRecommend(url, req, opts.timeout)).body;
        else {
          const client = recommenderClient(opts.address);
          try {
            res = await recommend(client, req, opts.timeout);
          } finally {
            client.close();
          }
        }
        if (opts.json) {
          console.log(JSON.stringify(res, null, 2));
          return;
        }
        console.log(
          table(
            ['rank', 'item', 'score'],
            res.items.map((it, i) => [i + 1, it.item_id, it.score]),
          ),
        );
        console.log(`\nModel:     ${res.model_name} v${res.model_version}`);
        console.log(`Dataset:   ${res.dataset_name}@${res.dataset_version}`);
        console.log(`Fallback:  ${res.fallback ? `yes (${res.fallback_reason})` : 'no'}`);
        console.log(`Request:   ${res.request_id}`);
        console.log(`Via:       ${url ? `HTTP ${url}` : `gRPC ${opts.address}`}`);
        console.log(`History source: ${historySourceText(res)}`);
        console.log(`Route:     ${res.route || 'single'}`);
        if (res.stages.length > 0)
          console.log(
            table(
              ['stage', 'graph sha256', 'ms'],
              res.stages.map((s) => [s.name, s.graph_sha256.slice(0, 16), s.latency_ms.toFixed(3)]),
            ),
          );
      },
    );
}
