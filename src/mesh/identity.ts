/**
 * The node's persistent identity: an Ed25519 private key in `<dataDir>/peer.key`, protobuf-encoded the libp2p
 * way, so the peer ID (and the reputation attached to it) survives restarts.
 *
 * @module
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { KeyFileError } from "./errors.ts";

/** Name of the key file inside the data directory. */
export const KEY_FILE = "peer.key";

/**
 * Loads the private key from `<dataDir>/peer.key`, creating the directory (mode 0700) and a fresh Ed25519 key
 * (mode 0600) on first start. Refuses a key file that group or others may read, as ssh does, rather than
 * silently tightening it: a leaked key lets anyone spend this node's reputation.
 */
export async function loadOrCreatePrivateKey(dataDir: string): Promise<PrivateKey> {
  const path = `${dataDir.replace(/\/+$/, "")}/${KEY_FILE}`;
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw new KeyFileError(path, "cannot be read", e);
    return await createKey(path);
  }
  const { mode } = await Deno.stat(path);
  if (mode !== null && (mode & 0o077) !== 0) {
    throw new KeyFileError(
      path,
      `is readable by others (mode ${(mode & 0o777).toString(8)}): run "chmod 600 ${path}"`,
    );
  }
  try {
    return privateKeyFromProtobuf(bytes);
  } catch (e) {
    throw new KeyFileError(path, "does not hold a protobuf-encoded private key", e);
  }
}

async function createKey(path: string): Promise<PrivateKey> {
  const key = await generateKeyPair("Ed25519");
  try {
    // createNew: two processes starting on one data directory must not overwrite each other's key.
    await Deno.writeFile(path, privateKeyToProtobuf(key), { mode: 0o600, createNew: true });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      return privateKeyFromProtobuf(await Deno.readFile(path));
    }
    throw new KeyFileError(path, "cannot be written", e);
  }
  return key;
}
