/**
 * The one error base of Meshgate. Leaf classes name one condition each; the gateway maps them to HTTP statuses
 * in a single `onError`, the CLI to exit codes. Argument mistakes in pure functions use the built-in
 * `TypeError`/`RangeError` instead.
 */
export class MeshError extends Error {
  override name = "MeshError";
  /** Machine-readable code, stable across versions: used as `error` in JSON bodies. */
  readonly code: string;

  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
  }
}
