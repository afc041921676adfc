/** Byte sizes, media types and hex, in the words people and wires read: "1 GiB", not 1073741824. */

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** A filesystem block: the least disk a file takes (ext4, XFS, APFS default to 4 KiB), whatever its size. */
export const BLOCK_BYTES = 4096;

/**
 * What a chunk of `length` bytes costs on disk: whole blocks, at least one (an empty file still takes an
 * inode and its directory entry). Store caps and volunteer quotas count this, not content bytes, so that
 * many tiny chunks cannot fill a disk while counting next to nothing.
 */
export function blockCost(length: number): number {
  return Math.max(1, Math.ceil(length / BLOCK_BYTES)) * BLOCK_BYTES;
}

/** "1 GiB", "1.5 MiB", "700 B": whole numbers stay whole, others get one decimal. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${UNITS[i]}`;
}

const TYPES: Record<string, string> = {
  txt: "text/plain; charset=utf-8",
  md: "text/markdown; charset=utf-8",
  csv: "text/csv; charset=utf-8",
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  xml: "application/xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  avif: "image/avif",
  svg: "image/svg+xml",
  ico: "image/x-icon",
  mp4: "video/mp4",
  webm: "video/webm",
  mov: "video/quicktime",
  mp3: "audio/mpeg",
  ogg: "audio/ogg",
  wav: "audio/wav",
  flac: "audio/flac",
  pdf: "application/pdf",
  zip: "application/zip",
  gz: "application/gzip",
  tar: "application/x-tar",
  wasm: "application/wasm",
};

/** The media type a file name's extension suggests, or undefined for none or an unknown one. */
export function typeFromName(name: string): string | undefined {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? TYPES[name.slice(dot + 1).toLowerCase()] : undefined;
}

/** Lower-case hex of `b`. */
export const toHex = (b: Uint8Array): string =>
  Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** The bytes of even-length hex `s` (checked by the caller). */
export function fromHex(s: string): Uint8Array {
  const out = new Uint8Array(s.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}
