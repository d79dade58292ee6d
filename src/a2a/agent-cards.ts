/**
 * The agent card of a troupe agent served over A2A: its name and description, a skill per capability,
 * streaming, the JSON-RPC interface under `/a2a/<agentId>/` in protocol v1.0 and in the SDK's v0.3
 * compatibility, and, when the bus has a key, that key as the security scheme every call needs.
 */
import { A2A_PROTOCOL_VERSION, type AgentCard, type AgentSkill } from "@a2a-js/sdk";
import { duplicateInterfacesForLegacy } from "@a2a-js/sdk/compat/v0_3";
import { API_KEY_HEADER } from "../protocol/headers.js";
import { VERSION } from "../version.js";

/** The name of the bus key's scheme in the cards' `securitySchemes`. */
const BUS_KEY_SCHEME = "troupeBusKey";

/** What a card is made of. */
export interface CardSubject {
  /** The id in the card's URL (a runtime agent's own id, a registered agent's bus id). */
  agentId: string;
  name: string;
  description: string;
  capabilities: string[];
}

/** The URL an agent is served at: `<origin>/a2a/<agentId>/` (its card is under it). */
export function agentUrlOf(origin: string, agentId: string): string {
  return `${origin}/a2a/${encodeURIComponent(agentId)}/`;
}

function skillOf(id: string, name: string, description: string): AgentSkill {
  return { id, name, description, tags: [id], examples: [], inputModes: [], outputModes: [], securityRequirements: [] };
}

/** The card of one agent served at `origin`; `keyRequired` declares the bus key. */
export function agentCardOf(subject: CardSubject, origin: string, keyRequired: boolean): AgentCard {
  const { agentId, name, description, capabilities } = subject;
  const url = agentUrlOf(origin, agentId);
  const skills =
    capabilities.length > 0
      ? capabilities.map((capability) => skillOf(capability, capability, `${name}: ${capability}`))
      : [skillOf(agentId, name, description || `Answers prompts as ${name}`)];
  return {
    name,
    description: description || `${name}, a troupe agent`,
    supportedInterfaces: duplicateInterfacesForLegacy([{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion: A2A_PROTOCOL_VERSION }], ["JSONRPC"]),
    provider: { organization: "troupe", url: origin },
    version: VERSION,
    capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: keyRequired
      ? {
          [BUS_KEY_SCHEME]: {
            scheme: {
              $case: "apiKeySecurityScheme",
              value: { description: "The troupe bus's API key", location: "header", name: API_KEY_HEADER },
            },
          },
        }
      : {},
    securityRequirements: keyRequired ? [{ schemes: { [BUS_KEY_SCHEME]: { list: [] } } }] : [],
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain"],
    skills,
    signatures: [],
  };
}
