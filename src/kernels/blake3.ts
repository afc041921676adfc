// TEMPORARY until the BLAKE3 kernel lands: the same signature over @noble/hashes.
import { blake3 as nobleBlake3 } from "@noble/hashes/blake3.js";

/** BLAKE3-256 digest (32 bytes) of `data`. */
export function blake3(data: Uint8Array): Uint8Array {
  return nobleBlake3(data);
}
