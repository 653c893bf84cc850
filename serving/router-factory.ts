/**
 * The router each cascade version gets when it loads: settings from $RECSYS_ROUTER (a JSON RouterConfig, e.g.
 * `{"budget":{"ratePerSecond":20}}`; `recsys serve --router` sets it), else the defaults below. Each loaded version
 * has its own bucket, so a canary and the champion each keep to the budget: the expensive path's rate per process
 * is at most the budget times the cascade versions it holds (one, outside a rollout).
 */
import { createRouter, type AdaptiveRouter } from './router';
import { routerSettings, type RouterConfigInput, type RouterSettings } from './router-config';

export const ROUTER_ENV = 'RECSYS_ROUTER';

/** 50 expensive requests/s per process: a starting point, tuned per deployment with bench/cascade-router.ts. */
export const DEFAULT_ROUTER: RouterConfigInput = { mode: 'routed', budget: { ratePerSecond: 50 } };

/** The settings in force: $RECSYS_ROUTER parsed (an error names the field and value), else the defaults. */
export function routerSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): RouterSettings {
  const text = env[ROUTER_ENV];
  if (text === undefined || text.trim() === '') return routerSettings(DEFAULT_ROUTER);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`$${ROUTER_ENV} is not JSON: ${(err as Error).message}`);
  }
  return routerSettings(json);
}

export function defaultRouter(): AdaptiveRouter {
  return createRouter(routerSettingsFromEnv());
}
