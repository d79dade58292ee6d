/**
 * The environment variables providers read, once, when they are constructed (never per call).
 */

/** The variables a provider may read: API keys and the OpenAI base URL (SPEC §7). */
export type ProviderEnvName = "OPENAI_API_KEY" | "OPENAI_BASE_URL" | "ANTHROPIC_API_KEY" | "GEMINI_API_KEY";

/** A variable's trimmed value; unset and empty are both `undefined`. */
export function readProviderEnv(name: ProviderEnvName): string | undefined {
  const value = process.env[name]?.trim();
  return value === undefined || value === "" ? undefined : value;
}
