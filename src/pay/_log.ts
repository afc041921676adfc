/** One JSON line on stderr for the money layer (never a stack trace: messages only). */
export function payLog(
  level: "info" | "warn" | "error",
  msg: string,
  fields: Record<string, unknown> = {},
): void {
  console.error(JSON.stringify({ level, component: "pay", msg, ...fields }, bigintAsString));
}

/** The first line of an error's message (viem's run to a dozen lines), for a log field. */
export function errorText(e: unknown): string {
  const short = (e as { shortMessage?: unknown })?.shortMessage;
  const text = typeof short === "string" ? short : e instanceof Error ? e.message : String(e);
  return text.split("\n")[0]!.slice(0, 300);
}

function bigintAsString(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}
