// One way to run domain work in an OpenTelemetry span (Trigger.dev's `Class.method` spans): the span is active for
// the work, an error is recorded on it and rethrown, and it always ends.
import { SpanStatusCode, type Attributes, type Span, type Tracer } from '@opentelemetry/api';

export function inSpan<T>(tracer: Tracer, name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  });
}
