/** One JSON line on stderr for a mesh-level warning (the libp2p logger is off by default). */
export function warn(component: string, msg: string, fields: Record<string, unknown>): void {
  console.error(JSON.stringify({ level: "warn", component, msg, ...fields }));
}
