// OpenTelemetry wiring, once per process: code instruments through @opentelemetry/api; this module decides where
// it goes (Prometheus text on /metrics, OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set).
// Traces are always recorded (so trace ids exist and are stored on events and attempts) but only exported over
// OTLP when an endpoint is configured.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';

export interface Telemetry {
  metricsHandler: (req: IncomingMessage, res: ServerResponse) => void;
  shutdown(): Promise<void>;
}

type SdkOptions = NonNullable<ConstructorParameters<typeof NodeSDK>[0]>;
type SpanProcessor = NonNullable<SdkOptions['spanProcessors']>[number];

// Without any span processor NodeSDK registers no tracer provider, and spans would have no trace ids at all.
const discardSpans: SpanProcessor = {
  onStart: () => undefined,
  onEnd: () => undefined,
  forceFlush: async () => undefined,
  shutdown: async () => undefined,
};

export function startTelemetry(options: { serviceName: string; otlpEndpoint?: string }): Telemetry {
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const readers: IMetricReader[] = [prometheus];
  const endpoint = options.otlpEndpoint?.replace(/\/$/, '');
  if (endpoint) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: `${endpoint}/v1/metrics` }),
        exportIntervalMillis: 15_000,
      }),
    );
  }
  // Everything is passed explicitly so the SDK does not configure exporters from OTEL_* variables on its own.
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({ 'service.name': options.serviceName }),
    autoDetectResources: false,
    instrumentations: [],
    metricReaders: readers,
    logRecordProcessors: [],
    ...(endpoint ? { traceExporter: new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }) } : { spanProcessors: [discardSpans] }),
  });
  sdk.start();
  return {
    metricsHandler: (req, res) => prometheus.getMetricsRequestHandler(req, res),
    shutdown: () => sdk.shutdown(),
  };
}
