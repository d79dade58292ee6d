/**
 * `ProviderRegistry`: the providers an agent can bind sessions to, by id.
 */
import type { ProviderInfo } from "../agents/agent.js";
import { BridgeError } from "../errors.js";
import type { Provider } from "./provider.js";

/** Providers by id, in registration order. */
export class ProviderRegistry {
  private readonly providers = new Map<string, Provider>();

  /** Registers providers given at once (as `createMultiProviderAgent` does). */
  constructor(providers: Provider[] = []) {
    for (const provider of providers) this.register(provider);
  }

  /** Adds a provider; an id already registered is CONFIG (rename one with the `id` option). */
  register(provider: Provider): this {
    if (this.providers.has(provider.id)) {
      throw new BridgeError("CONFIG", `providers: duplicate provider id ${provider.id} (give one an \`id\` option)`, { field: "providers" });
    }
    this.providers.set(provider.id, provider);
    return this;
  }

  /** The provider with this id, if registered. */
  get(providerId: string): Provider | undefined {
    return this.providers.get(providerId);
  }

  /** Whether a provider with this id is registered. */
  has(providerId: string): boolean {
    return this.providers.has(providerId);
  }

  /** Registered ids, in registration order. */
  ids(): string[] {
    return [...this.providers.keys()];
  }

  /** `{ id, models }` of every provider, for `agents_discover`. */
  list(): ProviderInfo[] {
    return [...this.providers.values()].map((provider) => provider.describe());
  }
}
