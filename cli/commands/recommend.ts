/** `recsys recommend`: one Recommend call against a running server, printed as a table with its lineage. */
import type { Command } from 'commander';
import { recommend, recommenderClient } from '../../serving/client';
import { table } from '../format';

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

export function registerRecommendCommand(program: Command): void {
  program
    .command('recommend')
    .description('ask a running `recsys serve` for recommendations')
    .requiredOption('--user <id>', 'user id')
    .option('--history <items>', 'recent item ids, comma-separated, oldest first', list, [] as string[])
    .option('--exclude <items>', 'item ids never to return, comma-separated', list, [] as string[])
    .option('--k <n>', 'how many items', (v) => Number(v), 10)
    .option('--address <host:port>', 'server address', '127.0.0.1:50051')
    .option('--timeout <ms>', 'deadline of the call', (v) => Number(v), 10_000)
    .option('--json', 'print the response as JSON', false)
    .action(
      async (opts: {
        user: string;
        history: string[];
        exclude: string[];
        k: number;
        address: string;
        timeout: number;
        json: boolean;
      }) => {
        if (!Number.isInteger(opts.k)) throw new Error(`--k must be an integer, got ${String(opts.k)}`);
        const client = recommenderClient(opts.address);
        try {
          const res = await recommend(
            client,
            {
              user_id: opts.user,
              history: opts.history.map((item_id) => ({ item_id, timestamp_ms: 0 })),
              k: opts.k,
              exclude_item_ids: opts.exclude,
            },
            opts.timeout,
          );
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
        } finally {
          client.close();
        }
      },
    );
}
