/**
 * A credential that cannot leak by accident: logging, string interpolation, JSON.stringify and util.inspect all show
 * "[secret]". Only `reveal()` gives the value, so every place that sends a secret is one grep away.
 */
import { inspect } from 'node:util';

const MASK = '[secret]';

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The value itself: only for the request that needs it, never for messages. */
  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return MASK;
  }

  toJSON(): string {
    return MASK;
  }

  [inspect.custom](): string {
    return MASK;
  }
}
