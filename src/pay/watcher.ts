/**
 * Follows a hub's `ChannelClosing` and `ChannelFinalized` events by polling `eth_getLogs` from the last block
 * seen, so an operator learns within a poll that a payer started closing (and can stop serving it and redeem
 * before the challenge period ends). A failed poll is retried with exponential backoff from the same block: an
 * RPC hiccup delays an event, never loses it. What it has seen is kept per channel, so a desk checks a
 * channel's status on every voucher without a chain call.
 *
 * @module
 */
import { type Address, type Client, type Hex, parseEventLogs } from "viem";
import { getBlockNumber, getLogs } from "viem/actions";
import { channelHubAbi } from "./abi.ts";
import { errorText, payLog } from "./_log.ts";

/** A channel the watcher saw leave `open`: closing until `closesAt` (chain time, s), or closed. */
export interface WatchedChannel {
  status: "closing" | "closed";
  closesAt?: bigint;
}

/** Channels remembered at most. */
const MAX_WATCHED = 65_536;

/** Options of a {@link ChainWatcher}. */
export interface ChainWatcherInit {
  /** Any viem client on the hub's chain. */
  client: Client;
  hub: Address;
  /** Time between polls, in ms. Default: 2 000. */
  pollMs?: number;
  /** Longest wait after failed polls (doubling from `pollMs`), in ms. Default: 30 000. */
  maxBackoffMs?: number;
  /** Most blocks asked of one `eth_getLogs` (RPCs cap the range). Default: 5 000. */
  maxBlocks?: bigint;
  onClosing?: (channel: Hex, closesAt: bigint) => void;
  onFinalized?: (channel: Hex) => void;
}

/** Polls a hub's closing events from the block it starts at; {@link start} it, then {@link stop} it. */
export class ChainWatcher {
  readonly #init: ChainWatcherInit;
  readonly #pollMs: number;
  readonly #maxBackoffMs: number;
  readonly #maxBlocks: bigint;
  readonly #channels = new Map<Hex, WatchedChannel>();
  /** The next block to read logs from. */
  #next: bigint | undefined;
  #failures = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #polling: Promise<void> | undefined;
  #stopped = false;

  constructor(init: ChainWatcherInit) {
    this.#init = init;
    this.#pollMs = init.pollMs ?? 2000;
    this.#maxBackoffMs = init.maxBackoffMs ?? 30_000;
    this.#maxBlocks = init.maxBlocks ?? 5000n;
    if (!(this.#pollMs > 0) || !(this.#maxBackoffMs >= this.#pollMs)) {
      throw new RangeError(
        `Watcher needs 0 < pollMs <= maxBackoffMs, got ${this.#pollMs}, ${this.#maxBackoffMs}`,
      );
    }
  }

  /** What was seen of `channel`, or undefined while it is (as far as the watcher knows) open. */
  status(channel: Hex): WatchedChannel | undefined {
    return this.#channels.get(channel);
  }

  /** Polls failed in a row (0 when the last succeeded). */
  get failures(): number {
    return this.#failures;
  }

  /** Reads the current block (what happened before it is the caller's to read from channel state) and
   * starts polling. An RPC down at start is not fatal: the first poll that succeeds starts from its head. */
  async start(): Promise<void> {
    this.#stopped = false;
    try {
      this.#next ??= (await getBlockNumber(this.#init.client, { cacheTime: 0 })) + 1n;
    } catch (e) {
      payLog("warn", "chain watch could not read the head block", { error: errorText(e) });
    }
    this.#schedule(this.#pollMs);
  }

  /** Stops polling; waits for a poll in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#polling;
  }

  /** Polls now (and waits for it); false if it failed. */
  async poll(): Promise<boolean> {
    while (this.#polling) await this.#polling;
    let ok = true;
    this.#polling = this.#poll().catch((e) => {
      ok = false;
      this.#failures++;
      payLog("warn", "chain watch poll failed", {
        failures: this.#failures,
        fromBlock: this.#next,
        retryInMs: this.#delay(),
        error: errorText(e),
      });
    }).finally(() => this.#polling = undefined);
    await this.#polling;
    if (ok) this.#failures = 0;
    return ok;
  }

  #delay(): number {
    return Math.min(this.#pollMs * 2 ** this.#failures, this.#maxBackoffMs);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(async () => {
      await this.poll();
      this.#schedule(this.#delay());
    }, ms);
  }

  async #poll(): Promise<void> {
    const client = this.#init.client;
    this.#next ??= (await getBlockNumber(client, { cacheTime: 0 })) + 1n;
    const head: bigint = await getBlockNumber(client, { cacheTime: 0 });
    while (this.#next <= head) {
      const from: bigint = this.#next;
      const to: bigint = head - from >= this.#maxBlocks ? from + this.#maxBlocks - 1n : head;
      const raw = await getLogs(client, { address: this.#init.hub, fromBlock: from, toBlock: to });
      const logs = parseEventLogs({
        abi: channelHubAbi,
        eventName: ["ChannelClosing", "ChannelFinalized"],
        logs: raw,
      });
      // Only once the whole range is read does the cursor move: a failure re-reads it.
      this.#next = to + 1n;
      for (const log of logs) {
        const channel = log.args.channel;
        if (log.eventName === "ChannelClosing") {
          const closesAt = (log.args as { closesAt: bigint }).closesAt;
          if (this.#channels.get(channel)?.status === "closed") continue;
          this.#remember(channel, { status: "closing", closesAt });
          this.#tell(() => this.#init.onClosing?.(channel, closesAt));
        } else {
          this.#remember(channel, { status: "closed" });
          this.#tell(() => this.#init.onFinalized?.(channel));
        }
      }
    }
  }

  /** Every closing on the hub is kept (not only this desk's: one may close while being bound), the oldest
   * forgotten past {@link MAX_WATCHED}. */
  #remember(channel: Hex, seen: WatchedChannel): void {
    this.#channels.delete(channel);
    if (this.#channels.size >= MAX_WATCHED) {
      this.#channels.delete(this.#channels.keys().next().value!);
    }
    this.#channels.set(channel, seen);
  }

  #tell(fn: () => void): void {
    try {
      fn();
    } catch {
      // A listener's failure is not the watcher's.
    }
  }
}
