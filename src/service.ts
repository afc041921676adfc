/**
 * The node as a list of services (the js-libp2p pattern): each is built from the components it needs,
 * started in dependency order and stopped in reverse, so a subsystem joins by adding a service, never by
 * editing the node's body.
 */

/** A part of a node with a lifecycle. Both methods are optional; `stop` must be safe after a failed start. */
export interface Service {
  start?(): void | Promise<void>;
  stop?(): void | Promise<void>;
}

/**
 * Services in start order. `start` starts them one by one; if one fails, those already started are stopped
 * in reverse and the error is rethrown, so a half-started node leaves nothing running (ports, workers, files).
 */
export class ServiceList {
  readonly #entries: { name: string; service: Service }[] = [];
  #started = 0;

  /** Appends `service` (started after every service added before it). Returns it, for chaining. */
  add<S extends Service>(name: string, service: S): S {
    if (this.#entries.some((e) => e.name === name)) {
      throw new TypeError(`A service named "${name}" is already in the node`);
    }
    this.#entries.push({ name, service });
    return service;
  }

  /** The service called `name`, if the node has one. */
  get<S extends Service>(name: string): S | undefined {
    return this.#entries.find((e) => e.name === name)?.service as S | undefined;
  }

  names(): string[] {
    return this.#entries.map((e) => e.name);
  }

  /** Starts every service not started yet, in order. */
  async start(): Promise<void> {
    try {
      for (; this.#started < this.#entries.length; this.#started++) {
        await this.#entries[this.#started]!.service.start?.();
      }
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Stops the started services in reverse order. One failing stop does not keep the others running. */
  async stop(): Promise<void> {
    const errors: unknown[] = [];
    for (; this.#started > 0; this.#started--) {
      const { name, service } = this.#entries[this.#started - 1]!;
      try {
        await service.stop?.();
      } catch (e) {
        errors.push(e);
        console.error(
          JSON.stringify({
            level: "error",
            msg: "service did not stop",
            service: name,
            error: `${e}`,
          }),
        );
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, "Several services did not stop");
  }
}
