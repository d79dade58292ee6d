/**
 * The agent of the cluster benches: it answers at once, so that what they measure is troupe's own cost; a prompt
 * saying `stream` sends 100 deltas first, one per turn.
 */
import { setImmediate as nextTurn } from "node:timers/promises";
import type { Agent } from "../src/index.js";

const ANSWER = "x".repeat(200);

export const instantAgent: Agent = {
  id: "instant",
  capabilities: [],
  prompt: async (ctx) => {
    if (ctx.prompt === "stream") {
      for (let delta = 0; delta < 100; delta += 1) {
        ctx.emit("0123456789");
        await nextTurn();
      }
    }
    return { text: ANSWER };
  },
};
