/**
 * troupe's public surface.
 */
export { createRuntime, Runtime, type PromptRequest, type RestoredSession, type SessionLifetime } from "./runtime/runtime.js";
export {
  conversationIdOf,
  converseRequestSchema,
  DEFAULT_THREAD_ID,
  type ConversationOwner,
  type ConversationView,
  type ConverseOptions,
  type ConverseRequest,
  type ConverseResult,
} from "./conversations/conversations.js";
export { conversationTools } from "./conversations/conversation-tools.js";
export { capabilityStateGet, capabilityStateSet, capabilityStateTools, readCapabilityState, writeCapabilityState } from "./conversations/capability-tools.js";
export { MemoryBook, DEFAULT_MEMORY_LIMITS, type Memory, type MemoryLimits, type MemoryMatch, type MemoryScope } from "./memory/memory-book.js";
export { memoryDelete, memoryList, memorySave, memorySearch, memoryTools } from "./memory/memory-tools.js";
export type { RuntimeOptions } from "./runtime/options.js";
export { busAgentIdOf, RUNTIME_FRAMEWORK, type RuntimeBusAgent } from "./runtime/bus-agents.js";
export { Bridge, TOOL_NAMES, type CallOptions, type ToolDescription } from "./bridge/bridge.js";
export { toolArgumentSchemas } from "./bridge/schemas.js";
export type * from "./bridge/schemas.js";
export { BridgeError, BRIDGE_ERROR_TYPES, httpStatusOf, isBridgeErrorType, SESSION_NOT_FOUND } from "./errors.js";
export type { BridgeErrorDetails, BridgeErrorType } from "./errors.js";
export type { Agent, AgentReply, AskOptions, AskReply, ConversationSettings, PromptContext, ProviderInfo, StopReason } from "./agents/agent.js";
export type { AskRequest, Messenger } from "./runtime/messenger.js";
export { createMockAgent, type MockAgentOptions } from "./agents/mock-agent.js";
export { playMockStep, type MockScript, type MockStep, type MockToolCall } from "./providers/mock.js";
export { mergeRuntimeParams, runtimeParamsSchema, type RuntimeParams } from "./providers/params.js";
export type { AgentDescription, AgentDescriptor, Executor, ExecutorHost, PromptEmitter } from "./executors/executor.js";
export { WorkerExecutor, DEFAULT_RESTART_POLICY, type WorkerConfig } from "./executors/worker.js";
export type { PermissionPolicy } from "./executors/acp-process.js";
export { InProcessExecutor } from "./executors/in-process.js";
export { systemClock, type Clock } from "./clock.js";
export {
  RUNTIME_EVENT_TYPES,
  type MessageOrigin,
  type PromptOrigin,
  type RuntimeEvent,
  type RuntimeEventMap,
  type RuntimeEventType,
  type RuntimeEventListener,
} from "./events/event-hub.js";
export type { EventStream, EventStreamStats } from "./events/event-stream.js";
export { EVENTS_PATH, LAST_EVENT_ID_HEADER, type EventStreamControlFrame, type MissedFrame, type OverflowFrame } from "./protocol/event-frames.js";
export { VERSION } from "./version.js";
export { startHttpServer, type HttpServer, type HttpServerOptions } from "./server/http-server.js";
export { serveMcp, type McpService, type ServeMcpOptions } from "./mcp/serve-mcp.js";
export { parseRuntimeParams } from "./providers/params.js";
export type { Provider, ProviderOptions, ProviderWarning, ResolvedRuntimeParams } from "./providers/provider.js";
export { BaseProvider, type ProviderCall, type ProviderIdentity } from "./providers/base-provider.js";
export { ProviderRegistry } from "./providers/registry.js";
export { OpenAIProvider, openAI, type OpenAIProviderOptions } from "./providers/openai.js";
export { AnthropicProvider, anthropic, type AnthropicProviderOptions } from "./providers/anthropic.js";
export { GeminiProvider, gemini, type GeminiProviderOptions } from "./providers/gemini.js";
export { MockProvider, mock, type MockProviderOptions } from "./providers/mock-provider.js";
export type { UpstreamFailure } from "./providers/upstream-errors.js";
export {
  MultiProviderCompanionAgent,
  createMultiProviderAgent,
  type MultiProviderAgentConfig,
  type MultiProviderAgentOptions,
} from "./agents/multi-provider-agent.js";
export type { JsonSchema, Tool, ToolContext, ToolDefinition } from "./tools/tool.js";
export { defineTool } from "./tools/define-tool.js";
export { ToolRegistry } from "./tools/tool-registry.js";
export { runToolLoop, DEFAULT_MAX_TOOL_ROUNDS, type ToolLoopOptions } from "./tools/tool-loop.js";
export type * from "./tools/tool-call.js";
export type { ProviderReply } from "./providers/provider.js";
export { CommunicationBus, BUS_AGENT_ID, type SendResult } from "./bus/bus.js";
export { DEV_KEY, isLoopbackHost, type BusOptions, type ResolvedBusOptions } from "./bus/options.js";
export { BUS_API_KEY_ENV, ENCRYPTION_KEY_ENV } from "./server/defaults.js";
export {
  SessionManager,
  type WorkflowSession,
  type SessionManagerEvent,
  type SessionManagerEventType,
  type ParticipantInput,
  type StepInput,
  type WorkflowUpdate,
  type CreateSessionOptions,
} from "./workflows/session-manager.js";
export { ORCHESTRATOR_AGENT_ID } from "./bus/runtime-agents.js";
export { ResultAggregator, type SessionSummary, type StepSummary, type AgentStepSummary, type SummarizeOptions } from "./workflows/aggregator.js";
export {
  connectAgent,
  type AgentClient,
  type AgentRegistration,
  type ConnectAgentOptions,
  type MessageContext,
  type OutgoingMessage,
  type ReplyOptions,
  type SendAnswer,
} from "./client/connect-agent.js";
export {
  envelopeSchema,
  parseEnvelope,
  MESSAGE_TYPES,
  PRIORITIES,
  DELIVERY_MODES,
  type MessageEnvelope,
  type EnvelopeInput,
  type MessageType,
  type Priority,
} from "./protocol/envelope.js";
export { parseDuration, formatDuration } from "./protocol/durations.js";
export { AGENT_CONNECT_PATH, AGENT_REGISTER_PATH, CLOSE_CODES, CLOSE_REASONS, type AckFrame, type SendAnswerFrame } from "./protocol/frames.js";
export type { AgentDescriptor as BusAgentDescriptor, AgentListing } from "./bus/agent-registry.js";
export type { MessageStatusView } from "./bus/delivery.js";
export type { BusMetricsSnapshot, LatencyPercentiles } from "./bus/metrics.js";
export { STORE_COLLECTIONS, type Store, type StoreCollection, type StoreRecord, type ListOptions } from "./store/store.js";
export { createMemoryStore } from "./store/memory-store.js";
export { openSqliteStore, SQLITE_STORE_FILE, type SqliteStoreOptions } from "./store/sqlite-store.js";
export { openPostgresStore, DEFAULT_POSTGRES_SCHEMA, type PostgresStoreOptions } from "./store/postgres-store.js";
export {
  loadAgentTeam,
  parseAgentFile,
  formatIssue,
  MAX_AGENT_FILE_BYTES,
  type AgentTeam,
  type AgentSpec,
  type CapabilitySpec,
  type AgentFileIssue,
  type LoadTeamOptions,
  type ParsedAgentFile,
} from "./agents/yaml/load-team.js";
export { AGENT_NAME_PATTERN, ROUTING_MODES, type AgentFileContext, type RoutingSetting } from "./agents/yaml/agent-file.js";
export { decideRouting, INLINE_PROMPT_CHARACTER_LIMIT, MAX_INLINE_TOOLS, type RoutingDecision, type RoutingMode } from "./agents/yaml/routing.js";
export { buildTeam, type BuildTeamOptions, type BuiltTeam, type TeamRoute } from "./agents/yaml/team.js";
export { delegateToAgentTool, DELEGATE_TOOL_NAME, type DelegateArgs, type DelegateTarget, type DelegateToolOptions } from "./tools/delegate-to-agent.js";
export { utilityTools, currentTimeTool, calculateTool, wordCountTool, jsonCheckTool, diffStatsTool } from "./tools/utility-tools.js";
