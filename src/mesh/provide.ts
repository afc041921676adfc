/**
 * Announcing held chunks in the DHT.
 */
import type { CID } from "../content/cid.ts";
import type { MeshNode } from "./node.ts";
import { warn } from "./_log.ts";

const log = (msg: string, fields: Record<string, unknown>) => warn("mesh:provide", msg, fields);

/**
 * Announces held chunks in the DHT in the background, two at a time, each within 30 s. Provider records are
 * hints (placement already put chunks where readers look first), so failures are logged, not thrown, and
 * a node with an empty routing table skips the work.
 */
export class ProvideQueue {
  #queue: CID[] = [];
  #queued = new Set<string>();
  #running = 0;
  #idle = Promise.withResolvers<void>();
  #stopped = false;

  constructor(readonly mesh: MeshNode, readonly concurrency = 2) {
    this.#idle.resolve();
  }

  add(cids: Iterable<CID>): void {
    if (this.#stopped || this.mesh.routingTableSize() === 0) return;
    for (const cid of cids) {
      const key = cid.toString();
      if (this.#queued.has(key)) continue;
      this.#queued.add(key);
      this.#queue.push(cid);
    }
    while (this.#running < this.concurrency && this.#queue.length) this.#run();
  }

  /** Resolves when every queued announcement has finished. */
  idle(): Promise<void> {
    return this.#idle.promise;
  }

  stop(): void {
    this.#stopped = true;
    this.#queue.length = 0;
  }

  async #run(): Promise<void> {
    if (this.#running++ === 0) this.#idle = Promise.withResolvers<void>();
    for (let cid = this.#queue.shift(); cid && !this.#stopped; cid = this.#queue.shift()) {
      this.#queued.delete(cid.toString());
      await this.mesh.provide(cid, { signal: AbortSignal.timeout(30_000) }).catch((e) =>
        log("provide failed", { cid: cid!.toString(), error: String(e) })
      );
    }
    if (--this.#running === 0) this.#idle.resolve();
  }
}
