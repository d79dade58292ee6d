/**
 * Fenced writes (see `Fence` in store.ts): which writes of a batch their fences admit. A batch admits a fenced
 * write when its token is the greatest of its resource, both in the batch and among the tokens the store has
 * committed for that resource before: an older tenure's writes never land after a newer one's.
 */
import { BridgeError } from "../errors.js";
import type { Fence, StoreCollection } from "./store.js";
import type { WriteOp } from "./write-batch.js";

/** Throws INTERNAL unless `fence` names a resource (a non-empty string without NUL) and a token (a safe integer ≥ 0). */
export function checkFence(collection: StoreCollection, fence: Fence | undefined): void {
  if (fence === undefined) return;
  const { resource, token, onRefused } = fence;
  const resourceOk = typeof resource === "string" && resource.length > 0 && !resource.includes("\u0000");
  const tokenOk = Number.isSafeInteger(token) && token >= 0;
  if (!resourceOk || !tokenOk || (onRefused !== undefined && typeof onRefused !== "function")) {
    throw new BridgeError("INTERNAL", `Invalid store fence in ${collection}: a fence is a non-empty resource name and a token (an integer ≥ 0)`, {
      collection,
    });
  }
}

/** The greatest token of each resource among the fenced writes of a batch. */
export function batchTokens(ops: readonly WriteOp[]): Map<string, number> {
  const tokens = new Map<string, number>();
  for (const { fence } of ops) {
    if (fence !== undefined) tokens.set(fence.resource, Math.max(fence.token, tokens.get(fence.resource) ?? 0));
  }
  return tokens;
}

/** Splits a batch into the writes to commit and those refused, given the resources whose newest token the batch holds. */
export function splitByFence(
  ops: readonly WriteOp[],
  tokens: ReadonlyMap<string, number>,
  admittedResources: ReadonlySet<string>,
): { admitted: WriteOp[]; refused: WriteOp[] } {
  const admitted: WriteOp[] = [];
  const refused: WriteOp[] = [];
  for (const op of ops) {
    const { fence } = op;
    const ok = fence === undefined || (admittedResources.has(fence.resource) && fence.token === tokens.get(fence.resource));
    (ok ? admitted : refused).push(op);
  }
  return { admitted, refused };
}

/**
 * The fences of a store held by one process (memory, SQLite): the newest token of each resource since the store
 * opened. One process holds such a store, so there is no other writer whose tokens it could miss.
 */
export class LocalFences {
  readonly #newest = new Map<string, number>();

  /**
   * Commits a batch: hands the writes its fences admit to `write`, then records their tokens as the newest, and
   * returns the writes refused. A `write` that throws records nothing (the batch is tried again whole).
   */
  commit(ops: readonly WriteOp[], write: (admitted: readonly WriteOp[]) => void): WriteOp[] {
    const { admitted, refused } = this.#admit(ops);
    write(admitted);
    for (const { fence } of admitted) {
      if (fence !== undefined) this.#newest.set(fence.resource, Math.max(fence.token, this.#newest.get(fence.resource) ?? 0));
    }
    return refused;
  }

  /** The writes of a batch to commit and those refused, by the tokens committed so far. */
  #admit(ops: readonly WriteOp[]): { admitted: WriteOp[]; refused: WriteOp[] } {
    const tokens = batchTokens(ops);
    if (tokens.size === 0) return { admitted: [...ops], refused: [] };
    const admittedResources = new Set<string>();
    for (const [resource, token] of tokens) {
      if (token >= (this.#newest.get(resource) ?? 0)) admittedResources.add(resource);
    }
    return splitByFence(ops, tokens, admittedResources);
  }
}
