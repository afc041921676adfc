/**
 * The ceiling of the mesh benchmark: a mesh node's libp2p (the same TCP, noise and yamux settings, made by
 * `createMeshNode`) that answers every stream of {@link BLAST_PROTOCOL} with SIZE bytes, sent as fast as
 * the stream takes them. Prints its multiaddr on stdout as `mesh: <addr>`. `deno run -A bench/_stream_peer.ts SIZE`
 */
import { createMeshNode } from "../src/mesh/node.ts";

export const BLAST_PROTOCOL = "/meshgate-bench/blast/1.0.0";
/** What each send hands the stream: a chunk's worth, as the exchange sends. */
export const PIECE = 256 * 1024;

if (import.meta.main) {
  const node = await createMeshNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
  const piece = new Uint8Array(PIECE);
  for (let at = 0; at < PIECE; at += 65536) crypto.getRandomValues(piece.subarray(at, at + 65536));
  const size = Number(Deno.args[0] ?? 64 * 1024 * 1024);
  await node.libp2p.handle(BLAST_PROTOCOL, async (stream) => {
    let left = size;
    while (left > 0) {
      const n = Math.min(PIECE, left);
      left -= n;
      if (!stream.send(n === PIECE ? piece : piece.subarray(0, n))) await stream.onDrain();
    }
    await stream.close();
  });
  console.log(`mesh: ${node.multiaddrs()[0]}`);
  Deno.addSignalListener("SIGTERM", () => node.stop().then(() => Deno.exit(0)));
}
