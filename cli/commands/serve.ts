/**
 * `recsys serve`: loads a registered model version (by alias, the champion by default) and serves recsys.v1 on
 * 127.0.0.1 until SIGINT/SIGTERM, then drains in-flight calls. SIGHUP re-resolves the alias and swaps to the version
 * it now points at; if that version fails its checks, the current one keeps serving.
 */
import type { Command } from 'commander';
import type { LoadedModel } from '../../serving/loaded-model';
import { registryLoader } from '../../serving/model-loader';
import type { ModelRef } from '../../serving/model-ref';
import { ModelSlot } from '../../serving/model-slot';
import { startServer } from '../../serving/server';
import { messageOf } from '../../serving/errors';

function describe(m: LoadedModel): string {
  const v = m.version;
  return (
    `${m.label} (aliases: ${v.aliases.join(', ') || 'none'}; dataset ${v.dataset.name}@${v.dataset.version}; ` +
    `${m.catalog.nItems} items, ${m.catalog.users.size} known users; top_k ${v.topK}, history_len ${v.historyLen})`
  );
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve a registered model over gRPC (recsys.v1.Recommender, health, reflection) on 127.0.0.1')
    .requiredOption('--model <name>', 'registered model name, e.g. two-tower-ml-100k')
    .option('--alias <alias>', 'registry alias to serve', 'champion')
    .option('--version <n>', 'serve this version instead of the alias')
    .option('--port <port>', 'port on 127.0.0.1 (0 picks a free one)', (v) => Number(v), 50051)
    .action(async (opts: { model: string; alias: string; version?: string; port: number }) => {
      if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)
        throw new Error(`--port must be an integer in [0, 65535], got ${opts.port}`);
      const ref: ModelRef =
        opts.version !== undefined
          ? { name: opts.model, version: opts.version }
          : { name: opts.model, alias: opts.alias };
      const slot = new ModelSlot(registryLoader());
      const started = Date.now();
      const { model } = await slot.load(ref);
      console.log(`Loaded ${describe(model)} in ${Date.now() - started} ms`);
      const running = await startServer({ slot, port: opts.port });
      console.log(`Serving recsys.v1.Recommender on ${running.address} (health: SERVING; Ctrl-C stops)`);

      process.on('SIGHUP', () => {
        console.log(`SIGHUP: reloading ${ref.version ?? `@${ref.alias}`}`);
        slot.load(ref).then(
          (r) =>
            console.log(
              r.swapped ? `Swapped ${r.previous} -> ${describe(r.model)}` : `${r.model.label} already serving`,
            ),
          (err: unknown) => console.error(`Reload failed, still serving ${slot.active?.label}: ${messageOf(err)}`),
        );
      });
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          console.log(`${signal}: draining in-flight calls`);
          void running.shutdown().then(resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      console.log('Stopped');
    });
}
