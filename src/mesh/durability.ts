/**
 * What each upload's placement is worth, kept across restarts: one small JSON file per pinned root,
 *
 *   <data>/placement/<manifest cid>.json   {"v":1,"at":"<ISO time>","survives":1,"holders":4,"overhead":0.6,"warning":"…"}
 *
 * written atomically (temp file in the same directory, fsync, rename, fsync of the directory), so a crash
 * leaves the old summary or the new one. A later upload of the same file replaces it.
 */
import type { CID } from "../content/cid.ts";
import type { Durability } from "./placement.ts";
import { writeFileAtomic } from "../store/store.ts";

export const PLACEMENT_DIR = "placement";

export class DurabilityRecords {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = `${dataDir}/${PLACEMENT_DIR}`;
  }

  async save(root: CID, durability: Durability): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true });
    const path = `${this.dir}/${root}.json`;
    const record = { v: 1, at: new Date().toISOString(), ...durability };
    await writeFileAtomic(this.dir, path, new TextEncoder().encode(JSON.stringify(record) + "\n"));
  }

  /** The summary saved for `root`; undefined when none was (an upload older than this record). */
  async get(root: CID): Promise<Durability | undefined> {
    let text;
    try {
      text = await Deno.readTextFile(`${this.dir}/${root}.json`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
    try {
      const { survives, holders, overhead, warning } = JSON.parse(text);
      if (![survives, holders, overhead].every((x) => typeof x === "number")) return undefined;
      return { survives, holders, overhead, ...(typeof warning === "string" ? { warning } : {}) };
    } catch {
      return undefined; // not ours, or damaged by hand: treated as unknown
    }
  }
}
