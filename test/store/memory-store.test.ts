/**
 * The in-memory store keeps the store contract.
 */
import { createMemoryStore } from "../../src/index.js";
import { describeStoreContract } from "./store-contract.js";

describeStoreContract("the memory store", {
  durable: false,
  createHarness: async () => ({ open: async () => createMemoryStore(), cleanup: async () => {} }),
});
