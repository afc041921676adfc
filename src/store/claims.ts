/**
 * Chunks claimed by uploads in progress. Two uploads may share chunks (the same bytes, or a common prefix),
 * so neither a failed upload's cleanup nor the drop of chunks placed on peers may delete a chunk that another
 * upload in progress still counts on.
 */
import type { CID } from "../content/cid.ts";
import type { ChunkStore } from "./store.ts";

/** Reference counts of claimed chunk CIDs, shared by every upload of one store. */
export class UploadClaims {
  readonly #counts = new Map<string, number>();

  constructor(readonly store: ChunkStore) {}

  /** True while an upload in progress claims `cid`. */
  has(cid: CID): boolean {
    return this.#counts.has(cid.toString());
  }

  /** Starts one upload's writes: every chunk it puts is claimed until `done` or `abort`. */
  begin(): UploadWrites {
    const claimed: string[] = [];
    const written = new Map<string, CID>();
    const release = () => {
      for (const key of claimed.splice(0)) {
        const n = (this.#counts.get(key) ?? 1) - 1;
        if (n > 0) this.#counts.set(key, n);
        else this.#counts.delete(key);
      }
    };
    return {
      put: async (cid, bytes) => {
        const key = cid.toString();
        this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
        claimed.push(key);
        // the caller computed `cid` from these very bytes
        if (await this.store.put(cid, bytes, { verified: true })) written.set(key, cid);
      },
      wrote: (cid) => written.has(cid.toString()),
      done: release,
      abort: async () => {
        release();
        const gone = [...written.values()].filter((cid) => !this.has(cid));
        written.clear();
        await Promise.all(gone.map((cid) => this.store.delete(cid)));
      },
    };
  }
}

/** The writes of one upload. */
export interface UploadWrites {
  /** Stores a chunk whose CID the caller just computed from `bytes`, claiming it. */
  put(cid: CID, bytes: Uint8Array): Promise<void>;
  /** True when this upload newly wrote `cid` (it was not in the store before). */
  wrote(cid: CID): boolean;
  /** The upload is kept: its claims end. */
  done(): void;
  /** The upload failed: its claims end and the chunks it newly wrote, claimed by no other upload, go. */
  abort(): Promise<void>;
}
