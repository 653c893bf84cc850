/**
 * The online feature store on Redis (the official `redis` client): per user the last N interest events, per item a
 * decayed popularity. Key layout and entry encoding: feature-layout.ts; what counts as interest and how popularity
 * decays: feature-rules.ts.
 *
 * Writes: one pipeline per batch, one Lua script call per event, so for each event the dedupe check and the write
 * are one atomic step. The script sets the event's marker (SET NX with a TTL); when the marker was already there the
 * event is a duplicate and nothing changes. Otherwise the entry goes into the user's interest list (or the list of
 * other events) at its place by time (newest first, ties in arrival order), the list is trimmed to N and its TTL
 * refreshed, and an interest event adds 1 to its item in the popularity bucket of its hour. A list entry carries
 * the event id, so an event retried after its marker expired is still found in the list (LPOS) and still counts
 * once. The marker lives at least as long as the popularity window: by then a retried event's hour is out of the
 * window and it cannot count twice there either.
 *
 * Reads: `recentHistory` is one LRANGE bounded by `timeoutMs` (default 25 ms; a deadline on the whole call, as the
 * client's own command timeout only covers the wait to be written). `popular` runs one script that combines the
 * window's buckets with their decay weights (ZUNIONSTORE WEIGHTS); it is cached in process for `popularCacheMs`, and
 * `cachedPopular` answers from that cache without waiting, so requests do not pay a round trip for it.
 *
 * When Redis is down: the client is created with `disableOfflineQueue`, and every call first checks that the
 * connection is ready, so nothing is queued while Redis is away: a read answers `unavailable` at once (no network
 * wait), a write answers `unavailable` for each event (the caller still logs the feedback). A command in flight when
 * the connection drops is rejected with it. A Redis that hangs without closing the connection is bounded by the
 * timeouts (a write that timed out may still be applied later; its retry is then a duplicate) and by
 * `maxPendingCommands`, past which new calls fail at once instead of piling up. The client reconnects by itself,
 * with exponential backoff (50 ms doubling up to 2 s, plus jitter) for as long as the store is open; the first
 * successful connection makes calls go through again. Nothing here ever throws on the request path.
 */
import { createClient, defineScript, type CommandParser } from 'redis';
import { z } from 'zod';
import { configIssue } from '../lib/config-issue';
import { withTimeout } from '../lib/time';
import { messageOf } from './errors';
import { decodeEntry, encodeEntry, featureKeys } from './feature-layout';
import { bucketExpiresAt, decayWeights, isInterest, popularityHour } from './feature-rules';
import type { TimedItem } from './history';
import type { HistoryRead, OnlineStore, RecordOutcome, StoreEvent } from './online-store';

const DAY_S = 86_400;

export const OnlineStoreConfig = z
  .object({
    /** redis:// or rediss:// URL. */
    url: z
      .string()
      .refine((u) => /^rediss?:\/\/[^/]/.test(u) && URL.canParse(u), 'must be a redis:// or rediss:// URL'),
    /** Bound of a history read, in ms. */
    timeoutMs: z.number().int().min(1).max(60_000).default(25),
    /** Bound of a write (one batch), in ms. */
    writeTimeoutMs: z.number().int().min(1).max(600_000).default(200),
    /** N: interest events kept per user (and other events, in their own list). */
    historyLength: z.number().int().min(1).max(10_000).default(50),
    /** TTL of a user's lists, refreshed on each write. */
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .default(30 * DAY_S),
    /** A rating at or above it means interest. */
    ratingThreshold: z.number().default(4),
    /** TTL of an event's dedupe marker; default max(1 day, the popularity window). */
    dedupeTtlSeconds: z.number().int().min(1).optional(),
    popularityWindowHours: z
      .number()
      .int()
      .min(1)
      .max(24 * 90)
      .default(72),
    popularityHalfLifeHours: z.number().positive().default(12),
    /** How long `popular` answers from its in-process cache. */
    popularCacheMs: z.number().int().min(0).default(5_000),
    /** How old a cached popularity list `cachedPopular` still returns (while Redis is away, say). */
    popularMaxAgeMs: z.number().int().min(0).default(60_000),
    /** How many items `popular` fetches at least (cached, then sliced per call). */
    popularFetchSize: z.number().int().min(1).max(10_000).default(100),
    /** How long connectOnlineStore waits for a first connection before returning anyway. */
    connectWaitMs: z.number().int().min(0).default(1_000),
    /** Bound of one connection attempt. */
    connectTimeoutMs: z.number().int().min(1).default(1_000),
    /** Commands queued on the connection at most (sent or not, awaiting replies); beyond it calls fail at once. */
    maxPendingCommands: z.number().int().min(1).default(10_000),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.dedupeTtlSeconds !== undefined && c.dedupeTtlSeconds < c.popularityWindowHours * 3600)
      ctx.addIssue({
        code: 'custom',
        path: ['dedupeTtlSeconds'],
        message: `must be at least the popularity window (${c.popularityWindowHours * 3600} s), or a retried event could count twice`,
      });
  });
export type OnlineStoreConfigInput = z.input<typeof OnlineStoreConfig>;
export type OnlineStoreSettings = z.output<typeof OnlineStoreConfig> & { dedupeTtlSeconds: number };

export interface OnlineStoreHooks {
  /**
   * The connection went down (with why) or came back; called on changes only, not on every reconnection attempt.
   * Default: one line on stderr per change.
   */
  onConnectionChange?: (state: 'up' | 'down', detail: string) => void;
}

export type ConnectOptions = OnlineStoreConfigInput & OnlineStoreHooks;

export interface PopularItem {
  itemId: string;
  /** Interest events in the window, each weighted by 2^(-age / half-life). */
  score: number;
}
export type PopularRead = { status: 'ok'; items: PopularItem[] } | { status: 'unavailable'; reason: string };

export interface RecordOptions {
  /** Count interest events in item popularity (default true); the backfill loads history only. */
  countPopularity?: boolean;
}

/** Parses and completes the options; a bad one is a ConfigError naming `onlineStore.<field>` and its value. */
export function onlineStoreSettings(input: OnlineStoreConfigInput): OnlineStoreSettings {
  const parsed = OnlineStoreConfig.safeParse(input);
  if (!parsed.success) throw configIssue('onlineStore', input, parsed.error);
  const c = parsed.data;
  return { ...c, dedupeTtlSeconds: c.dedupeTtlSeconds ?? Math.max(DAY_S, c.popularityWindowHours * 3600) };
}

/** Delay before reconnection attempt `retries` (0-based): 50 ms doubling up to 2 s, plus up to 100 ms of jitter. */
export function reconnectDelayMs(retries: number, random: () => number = Math.random): number {
  return Math.min(50 * 2 ** Math.min(retries, 16), 2_000) + Math.floor(random() * 100);
}

// KEYS[1] dedupe marker, KEYS[2] the user's list the event belongs to, KEYS[3] its popularity bucket.
// ARGV: marker TTL, entry, time (ms), N, list TTL, item id, bucket EXPIREAT (0: do not count popularity).
// Returns 1 when recorded, 0 for a duplicate.
const RECORD_LUA = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local list, entry, t, cap = KEYS[2], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('LPOS', list, entry) then return 0 end
local function time_of(e) return tonumber(string.match(e, '^%[(%-?%d+)')) or 0 end
local head = redis.call('LINDEX', list, 0)
local placed = false
if (not head) or time_of(head) <= t then
  redis.call('LPUSH', list, entry)
  placed = true
else
  local all = redis.call('LRANGE', list, 0, -1)
  for i = 2, #all do
    if time_of(all[i]) <= t then
      redis.call('LINSERT', list, 'BEFORE', all[i], entry)
      placed = true
      break
    end
  end
  if (not placed) and #all < cap then
    redis.call('RPUSH', list, entry)
    placed = true
  end
end
if placed then redis.call('LTRIM', list, 0, cap - 1) end
redis.call('EXPIRE', list, ARGV[5])
if ARGV[7] ~= '0' then
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[6])
  redis.call('EXPIREAT', KEYS[3], ARGV[7])
end
return 1
`;

// KEYS: the window's buckets, then the scratch key. ARGV: one weight per bucket, then how many items to return.
// Returns [item, score, item, score, ...], best first.
const POPULAR_LUA = `
local n = #KEYS - 1
local tmp = KEYS[#KEYS]
local args = {'ZUNIONSTORE', tmp, n}
for i = 1, n do args[#args + 1] = KEYS[i] end
args[#args + 1] = 'WEIGHTS'
for i = 1, n do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
local top = redis.call('ZRANGE', tmp, 0, tonumber(ARGV[n + 1]) - 1, 'REV', 'WITHSCORES')
redis.call('DEL', tmp)
return top
`;

const SCRIPTS = {
  recordEvent: defineScript({
    NUMBER_OF_KEYS: 3,
    SCRIPT: RECORD_LUA,
    parseCommand(parser: CommandParser, keys: readonly string[], args: readonly string[]) {
      for (const k of keys) parser.pushKey(k);
      parser.push(...args);
    },
    transformReply: (reply: unknown): number => Number(reply),
  }),
  popularItems: defineScript({
    SCRIPT: POPULAR_LUA,
    parseCommand(parser: CommandParser, keys: readonly string[], args: readonly string[]) {
      parser.push(String(keys.length));
      for (const k of keys) parser.pushKey(k);
      parser.push(...args);
    },
    transformReply: (reply: unknown): string[] => (reply as unknown[]).map(String),
  }),
};

const newClient = (s: OnlineStoreSettings) =>
  createClient({
    url: s.url,
    // Commands sent while the connection is down fail at once instead of waiting for it.
    disableOfflineQueue: true,
    // A Redis that hangs with the connection open: past this many commands awaiting replies, new ones fail at once.
    commandsQueueMaxLength: s.maxPendingCommands,
    socket: { connectTimeout: s.connectTimeoutMs, reconnectStrategy: (retries) => reconnectDelayMs(retries) },
    scripts: SCRIPTS,
  });
type Client = ReturnType<typeof newClient>;

/** Times are whole non-negative milliseconds (the Lua script reads them as digits); anything else is `fallback`. */
function wholeMs(t: number, fallback: number): number {
  return Number.isFinite(t) && t >= 0 && t <= 8.64e15 ? Math.floor(t) : fallback;
}

export class RedisOnlineStore implements OnlineStore {
  private readonly client: Client;
  /** The same connection, with the write timeout (the popularity read is off the request path: cached). */
  private readonly slowReader: Client;
  private up = false;
  private lastError = 'not connected yet';
  private closed = false;
  private readonly popularCache = new Map<string, { atMs: number; items: PopularItem[]; size: number }>();
  private readonly popularInFlight = new Map<string, Promise<PopularRead>>();

  constructor(
    readonly settings: OnlineStoreSettings,
    private readonly hooks: OnlineStoreHooks = {},
  ) {
    this.client = newClient(settings);
    this.slowReader = this.client.withCommandOptions({ timeout: settings.writeTimeoutMs });
    const where = new URL(settings.url).host;
    const change =
      hooks.onConnectionChange ??
      ((state: 'up' | 'down', detail: string) =>
        console.error(`online store (Redis at ${where}): ${state}: ${detail}`));
    // An 'error' listener is required (without one the client throws); it also sees every failed reconnection.
    this.client.on('error', (err: unknown) => {
      this.lastError = messageOf(err) || 'connection error';
    });
    this.client.on('reconnecting', () => {
      if (this.up) change('down', `${this.lastError}; answering without the store and reconnecting`);
      this.up = false;
    });
    this.client.on('ready', () => {
      if (!this.up) change('up', 'connected');
      this.up = true;
    });
  }

  /** Starts connecting in the background (retrying with backoff until it works or the store is closed). */
  start(): void {
    this.client.connect().catch((err: unknown) => {
      if (!this.closed) this.lastError = messageOf(err);
    });
  }

  /** True while commands can be sent. */
  get connected(): boolean {
    return this.client.isReady;
  }

  /** Resolves true once connected, false if that takes longer than `ms`. */
  async waitUntilReady(ms: number): Promise<boolean> {
    if (this.client.isReady) return true;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(this.client.isReady), ms);
      this.client.on('ready', onReady);
    });
  }

  private down(): string {
    return this.closed ? 'the online store is closed' : `Redis is not connected (${this.lastError})`;
  }

  async recentHistory(namespace: string, userId: string): Promise<HistoryRead> {
    if (!this.client.isReady) return { status: 'unavailable', reason: this.down() };
    try {
      const key = featureKeys.history(namespace, userId);
      // The client's own command timeout only covers waiting to be written, not waiting for the reply: a Redis that
      // hangs with the connection open would hold the request. The deadline bounds the whole read (and costs less
      // than the client's per-command AbortSignal, which this hot path does without).
      const raw = await withTimeout(
        this.client.lRange(key, 0, this.settings.historyLength - 1),
        this.settings.timeoutMs,
        'the history read',
      );
      const items: TimedItem[] = [];
      // Stored newest first; histories are oldest first.
      for (let i = raw.length - 1; i >= 0; i--) {
        const e = decodeEntry(String(raw[i]));
        if (e) items.push({ item_id: e.itemId, timestamp_ms: e.timeMs });
      }
      return { status: 'ok', items };
    } catch (err) {
      return { status: 'unavailable', reason: `history read failed: ${messageOf(err)}` };
    }
  }

  /** The script's keys and arguments for one event. */
  private recordCall(namespace: string, e: StoreEvent, nowMs: number, countPopularity: boolean) {
    const s = this.settings;
    const timeMs = wholeMs(e.timeMs, nowMs);
    const value = Number.isFinite(e.value) ? e.value : 0;
    const interest = isInterest(e.event, value, s.ratingThreshold);
    const hour = interest && countPopularity ? popularityHour(timeMs, nowMs, s.popularityWindowHours) : undefined;
    const keys = [
      featureKeys.seen(namespace, e.eventId),
      interest ? featureKeys.history(namespace, e.userId) : featureKeys.other(namespace, e.userId),
      // Unused when the event does not count; any key of the namespace keeps all keys in one slot.
      featureKeys.popularity(namespace, hour ?? Math.floor(nowMs / 3_600_000)),
    ];
    const entry = encodeEntry({ timeMs, event: e.event, value, itemId: e.itemId, eventId: e.eventId });
    const args = [
      String(s.dedupeTtlSeconds),
      entry,
      String(timeMs),
      String(s.historyLength),
      String(s.ttlSeconds),
      e.itemId,
      hour === undefined ? '0' : String(bucketExpiresAt(hour, s.popularityWindowHours)),
    ];
    return { keys, args };
  }

  async record(namespace: string, events: readonly StoreEvent[], opts: RecordOptions = {}): Promise<RecordOutcome[]> {
    if (events.length === 0) return [];
    const unavailable = (reason: string): RecordOutcome[] => events.map(() => ({ status: 'unavailable', reason }));
    if (!this.client.isReady) return unavailable(this.down());
    try {
      const nowMs = Date.now();
      const multi = this.client.multi();
      for (const e of events) {
        const { keys, args } = this.recordCall(namespace, e, nowMs, opts.countPopularity ?? true);
        multi.recordEvent(keys, args);
      }
      const replies = await withTimeout(multi.execAsPipeline(), this.settings.writeTimeoutMs, 'the write');
      return replies.map((r): RecordOutcome => ({ status: 'recorded', duplicate: Number(r) === 0 }));
    } catch (err) {
      return unavailable(`write failed: ${messageOf(err)}`);
    }
  }

  /**
   * The n items with the most decayed interest in the namespace, best first. Answered from the in-process cache while
   * it is younger than popularCacheMs; one refresh at a time per namespace.
   */
  async popular(namespace: string, n: number): Promise<PopularRead> {
    const hit = this.popularCache.get(namespace);
    if (hit && Date.now() - hit.atMs < this.settings.popularCacheMs && (n <= hit.size || hit.items.length < hit.size))
      return { status: 'ok', items: hit.items.slice(0, n) };
    const size = Math.max(n, this.settings.popularFetchSize);
    let inFlight = this.popularInFlight.get(namespace);
    if (!inFlight) {
      inFlight = this.fetchPopular(namespace, size).finally(() => this.popularInFlight.delete(namespace));
      this.popularInFlight.set(namespace, inFlight);
    }
    const read = await inFlight;
    return read.status === 'ok' ? { status: 'ok', items: read.items.slice(0, n) } : read;
  }

  /**
   * The cached popular items, best first, without waiting: for a hot path (the popularity fallback). Undefined until
   * a first read succeeded or once the cache is older than popularMaxAgeMs; a cache older than popularCacheMs starts
   * one refresh in the background.
   */
  cachedPopular(namespace: string): readonly PopularItem[] | undefined {
    const hit = this.popularCache.get(namespace);
    const age = hit ? Date.now() - hit.atMs : Infinity;
    if (age >= this.settings.popularCacheMs && !this.popularInFlight.has(namespace) && this.client.isReady)
      void this.popular(namespace, hit?.size ?? this.settings.popularFetchSize);
    return age < this.settings.popularMaxAgeMs ? hit?.items : undefined;
  }

  private async fetchPopular(namespace: string, size: number): Promise<PopularRead> {
    if (!this.client.isReady) return { status: 'unavailable', reason: this.down() };
    try {
      const nowMs = Date.now();
      const buckets = decayWeights(nowMs, {
        windowHours: this.settings.popularityWindowHours,
        halfLifeHours: this.settings.popularityHalfLifeHours,
      });
      const keys = [
        ...buckets.map((b) => featureKeys.popularity(namespace, b.hour)),
        featureKeys.popularityUnion(namespace),
      ];
      const args = [...buckets.map((b) => String(b.weight)), String(size)];
      const flat = await withTimeout(
        this.slowReader.popularItems(keys, args),
        this.settings.writeTimeoutMs,
        'the popularity read',
      );
      const items: PopularItem[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) items.push({ itemId: flat[i]!, score: Number(flat[i + 1]) });
      this.popularCache.set(namespace, { atMs: nowMs, items, size });
      return { status: 'ok', items };
    } catch (err) {
      return { status: 'unavailable', reason: `popularity read failed: ${messageOf(err)}` };
    }
  }

  /** Stops reconnecting and closes the connection (pending replies are awaited when connected). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.client.isReady) await withTimeout(this.client.close(), 2_000, 'closing');
      else this.client.destroy();
    } catch {
      if (this.client.isOpen) this.client.destroy();
    }
  }
}

/**
 * Creates the store and starts connecting. Never fails because Redis is down: it waits up to connectWaitMs for a
 * first connection, then returns anyway, and the store keeps reconnecting in the background while its calls answer
 * `unavailable` (the serving tier starts and answers from the dataset fallback). Bad options throw a ConfigError.
 */
export async function connectOnlineStore(opts: ConnectOptions): Promise<RedisOnlineStore> {
  const { onConnectionChange, ...config } = opts;
  const store = new RedisOnlineStore(onlineStoreSettings(config), { onConnectionChange });
  store.start();
  await store.waitUntilReady(store.settings.connectWaitMs);
  return store;
}
