/** A Content-Disposition value naming `name`: plain ASCII as is, anything else with an ASCII fallback
 * and the exact name as RFC 6266's UTF-8 `filename*` (the gateway and the browser client both send it). */
export function contentDisposition(kind: "inline" | "attachment", name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, "_").replace(/["\\]/g, "_");
  if (ascii === name) return `${kind}; filename="${name}"`;
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
