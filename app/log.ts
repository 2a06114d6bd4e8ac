// Structured logs (ADR 019): one pino logger per process, JSON lines on stdout, pretty only when stdout is a
// terminal. Every line carries the level, the process role and, where they exist, the request id (HTTP), the job id
// and task (worker) and the trace and span ids of the active OpenTelemetry span.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import pino from 'pino';

/** What this process is: `start` is the embedded default that is web and worker at once. */
export type ProcessRole = 'web' | 'worker' | 'start' | 'migrate' | 'cli';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'auto' | 'json' | 'pretty';

/** Per request or per job, kept in async context so lines logged anywhere below carry it. */
export interface LogContext {
  request_id?: string;
  job_id?: string;
  task?: string;
}

export interface Log {
  debug(fields: object, msg: string): void;
  debug(msg: string): void;
  info(fields: object, msg: string): void;
  info(msg: string): void;
  warn(fields: object, msg: string): void;
  warn(msg: string): void;
  error(fields: object, msg: string): void;
  error(msg: string): void;
  enabled(level: LogLevel): boolean;
}

const contexts = new AsyncLocalStorage<LogContext>();

/** Runs `fn` with `context` on every line it (and whatever it awaits) logs. */
export function withLogContext<T>(context: LogContext, fn: () => T): T {
  return contexts.run(context, fn);
}

let role: ProcessRole = 'cli';

// Called for every line: the role, then the async context, then the active span (ids as in OpenTelemetry's log data
// model). A field the call itself passes wins.
function mixin(): Record<string, unknown> {
  const fields: Record<string, unknown> = { role };
  const context = contexts.getStore();
  if (context) Object.assign(fields, context);
  const span = trace.getActiveSpan()?.spanContext();
  if (span && isSpanContextValid(span)) {
    fields.trace_id = span.traceId;
    fields.span_id = span.spanId;
  }
  return fields;
}

type PrettyFactory = (options: Record<string, unknown>) => pino.DestinationStream;

/** pino-pretty is a devDependency: a production install (npm ci --omit=dev) has none, and logs JSON even in a TTY. */
function loadPretty(): PrettyFactory | null {
  try {
    const required = createRequire(import.meta.url)('pino-pretty') as PrettyFactory | { default: PrettyFactory };
    return typeof required === 'function' ? required : required.default;
  } catch {
    return null;
  }
}

function build(level: LogLevel, format: LogFormat, destination?: pino.DestinationStream): pino.Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // The level as its name, not pino's number: what log systems and people filter on.
    formatters: { level: (label) => ({ level: label }) },
    mixin,
  };
  if (destination) return pino(options, destination);
  const wantPretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  const pretty = wantPretty ? loadPretty() : null;
  if (pretty) {
    return pino(options, pretty({ sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  }
  // Synchronous writes: a line logged just before process.exit() is not lost.
  return pino(options, pino.destination({ dest: 1, sync: true }));
}

let root = build('info', 'auto');

/**
 * Once at process start, from the validated environment (app/env.ts). `destination` (JSON lines) is for tests that
 * read what a part of the process logged.
 */
export function configureLogging(options: { role: ProcessRole; level?: LogLevel; format?: LogFormat; destination?: pino.DestinationStream }): void {
  role = options.role;
  root = build(options.level ?? 'info', options.format ?? 'auto', options.destination);
}

export function processRole(): ProcessRole {
  return role;
}

/**
 * A logger for one part of the process (`component` on each line). It writes through whichever root logger is
 * current, so modules may take theirs at import time, before configureLogging() runs.
 */
export function logger(component: string): Log {
  const at =
    (level: LogLevel) =>
    (a: object | string, b?: string): void => {
      if (!root.isLevelEnabled(level)) return;
      if (typeof a === 'string') root[level]({ component }, a);
      else root[level]({ component, ...a }, b);
    };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    enabled: (level) => root.isLevelEnabled(level),
  } as Log;
}

/** An error as log fields: pino's serializer (type, message, stack, cause) under `err`. */
export function errorFields(error: unknown): { err: unknown } {
  return { err: error instanceof Error ? error : new Error(String(error)) };
}
