/** Single-range parsing for `Range: bytes=…` (RFC 9110 §14), as gateways are expected to support. */

export type RangeResult =
  /** Serve the whole entity (no Range, an unparsable one, several ranges, or an empty entity). */
  | { kind: "full" }
  /** Serve bytes [start, end). */
  | { kind: "partial"; start: number; end: number }
  /** 416 with `Content-Range: bytes *\/size`. */
  | { kind: "unsatisfiable" };

export function parseRange(header: string | null | undefined, size: number): RangeResult {
  if (!header || size === 0) return { kind: "full" };
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return { kind: "full" };
  const [, a, b] = match as unknown as [string, string, string];
  if (a === "" && b === "") return { kind: "full" };
  if (a === "") {
    // Suffix range: the last N bytes.
    const n = Number(b);
    if (n === 0) return { kind: "unsatisfiable" };
    return { kind: "partial", start: Math.max(0, size - n), end: size };
  }
  const start = Number(a);
  const last = b === "" ? Infinity : Number(b);
  if (last < start) return { kind: "full" };
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "partial", start, end: Math.min(last, size - 1) + 1 };
}
