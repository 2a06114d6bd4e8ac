// OpenTelemetry wiring, once per process: code instruments through @opentelemetry/api; this module decides where
// it goes (Prometheus text on /metrics, OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { metrics } from '@opentelemetry/api';
import { MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';

export interface Telemetry {
  metricsHandler: (req: IncomingMessage, res: ServerResponse) => void;
  shutdown(): Promise<void>;
}

export function startTelemetry(options: { serviceName: string; otlpEndpoint?: string }): Telemetry {
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const readers: MetricReader[] = [prometheus];
  if (options.otlpEndpoint) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: `${options.otlpEndpoint.replace(/\/$/, '')}/v1/metrics` }),
        exportIntervalMillis: 15_000,
      }),
    );
  }
  const provider = new MeterProvider({ readers, resource: resourceFromAttributes({ 'service.name': options.serviceName }) });
  metrics.setGlobalMeterProvider(provider);
  return {
    metricsHandler: (req, res) => prometheus.getMetricsRequestHandler(req, res),
    shutdown: () => provider.shutdown(),
  };
}
