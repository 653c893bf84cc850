/**
 * `recsys features backfill --dataset <uri>`: loads a dataset version's latest histories into the online feature store
 * (Redis), so a cold store serves what the dataset fallback serves (serving/feature-backfill.ts). Idempotent: a rerun
 * changes nothing. Progress is a bar on a terminal and a line per tenth otherwise (logs, CI).
 */
import type { Command } from 'commander';
import { config } from '../../lib/config';
import { objectStore } from '../../lib/object-store';
import { backfillFeatures, openBackfillStore, type BackfillProgress } from '../../serving/feature-backfill';
import { featureKeys } from '../../serving/feature-layout';
import { duration } from '../format';

const int = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
};

const BAR_WIDTH = 30;

/** `[#########.....................]  30%  283/943 users  12840/41000 events` */
export function progressBar(p: BackfillProgress): string {
  const share = p.eventsTotal > 0 ? p.events / p.eventsTotal : 1;
  const filled = Math.round(share * BAR_WIDTH);
  const pct = `${Math.floor(share * 100)}%`.padStart(4);
  return (
    `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${pct}  ${p.users}/${p.usersTotal} users  ` +
    `${p.events}/${p.eventsTotal} events`
  );
}

/** A progress printer: redraws one line on a TTY, prints a plain line at each tenth otherwise. */
function progressPrinter(tty: boolean): { update(p: BackfillProgress): void; done(): void } {
  let lastTenth = -1;
  let drawn = false;
  return {
    update(p) {
      if (tty) {
        process.stdout.write(`\r${progressBar(p)}`);
        drawn = true;
        return;
      }
      const tenth = p.eventsTotal > 0 ? Math.floor((10 * p.events) / p.eventsTotal) : 10;
      if (tenth > lastTenth) console.log(progressBar(p));
      lastTenth = tenth;
    },
    done() {
      if (drawn) process.stdout.write('\n');
      drawn = false;
    },
  };
}

interface BackfillFlags {
  dataset: string;
  redisUrl: string;
  historyLength: number;
  ttlDays: number;
  batchSize: number;
  json: boolean;
}

export function registerFeaturesCommand(program: Command): void {
  const features = program.command('features').description('the online feature store (Redis)');
  features
    .command('backfill')
    .description("load a dataset version's latest histories per user into the online store (idempotent)")
    .requiredOption('--dataset <uri>', 'dataset version: s3://<bucket>/datasets/<name>/<version>/')
    .option('--redis-url <url>', 'the online store', config().redisUrl)
    .option(
      '--history-length <n>',
      'interactions kept per user (the store and the model should agree)',
      int('--history-length'),
      50,
    )
    .option('--ttl-days <n>', "how long a user's history lives without a new event", int('--ttl-days'), 30)
    .option('--batch-size <n>', 'events per pipeline', int('--batch-size'), 2000)
    .option('--json', 'print the result as JSON', false)
    .action(async (opts: BackfillFlags) => {
      const cfg = config();
      const store = await openBackfillStore({
        url: opts.redisUrl,
        historyLength: opts.historyLength,
        ttlSeconds: opts.ttlDays * 86_400,
        onConnectionChange: (state, detail) => {
          if (state === 'down') console.error(`Redis at ${opts.redisUrl}: ${detail}`);
        },
      });
      const started = performance.now();
      const printer = progressPrinter(!opts.json && process.stdout.isTTY === true);
      try {
        const r = await backfillFeatures({
          datasetUri: opts.dataset,
          store,
          objectStore: objectStore(),
          cacheDir: cfg.cacheDir,
          batchSize: opts.batchSize,
          onProgress: opts.json ? undefined : (p) => printer.update(p),
        });
        printer.done();
        const seconds = (performance.now() - started) / 1000;
        if (opts.json) {
          console.log(JSON.stringify({ ...r, redisUrl: opts.redisUrl, seconds }, null, 2));
          return;
        }
        console.log(
          `Loaded ${r.events} events of ${r.users} users from ${r.namespace}/${r.datasetVersion} ` +
            `(last ${r.historyLength} per user) in ${duration(seconds)}: ${r.recorded} new, ${r.duplicates} already there`,
        );
        console.log(`Keys: ${featureKeys.history(r.namespace, '<user>')} in ${opts.redisUrl}`);
      } finally {
        printer.done();
        await store.close();
      }
    });
}
