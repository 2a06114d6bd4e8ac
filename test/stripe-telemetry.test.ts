// Failure telemetry of reporting through the real OpenTelemetry SDK wiring (startTelemetry): histograms, ops
// counters with processor/source attributes (never ids) on /metrics, and trace ids stored on events and attempts.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { trace } from '@opentelemetry/api';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTelemetry, type Telemetry } from '../app/server/telemetry';
import { startReportingHarness, type ReportingHarness } from './support/reporting';

let telemetry: Telemetry;
let h: ReportingHarness;

beforeAll(async () => {
  telemetry = startTelemetry({ serviceName: 'meterdesk-test' });
  h = await startReportingHarness({ api: 'v1' });
});
afterAll(async () => {
  await h?.close();
  await telemetry?.shutdown();
});

async function scrape(): Promise<string> {
  const server = createServer((req, res) => telemetry.metricsHandler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
    return await res.text();
  } finally {
    server.close();
  }
}

it('records latency and batch size histograms, ops counters by processor and source, and trace ids', async () => {
  await h.addCustomer('tel', 'cus_tel');
  await h.addCustomer('tel-ghost', 'cus_tel_ghost', { inSimulator: false });
  h.sim.addFault({ kind: 'rate_limit', count: 1, match: { identifier: 'tel-0' } });
  // Ingest inside a span, as the API does: the event keeps that trace id; its attempts carry the job's.
  const ingestTrace = await trace.getTracer('test').startActiveSpan('POST /api/v1/events', async (span) => {
    await h.ingest([...Array.from({ length: 20 }, (_, i) => ({ customer: 'tel', identifier: `tel-${i}` })), { customer: 'tel-ghost', identifier: 'tel-ghost-1' }]);
    span.end();
    return span.spanContext().traceId;
  });
  await h.drain();

  const text = await scrape();
  expect(text).toMatch(/meterdesk_stripe_report_latency\w*_count\{[^}]*api="v1"[^}]*\} 20/);
  expect(text).toMatch(/meterdesk_stripe_report_batch_size\w*_count\{[^}]*api="v1"/);
  expect(text).toMatch(/meterdesk_ops_meter_reporting_failed_total\{[^}]*processor="stripe"[^}]*source="sync"[^}]*\} 1/);
  expect(text).toMatch(/meterdesk_ops_processor_rate_limited_total\{[^}]*processor="stripe"/);
  expect(text).toMatch(/meterdesk_stripe_report_attempts_total\{[^}]*outcome="rate_limited"/);
  // Ids never become metric attributes.
  expect(text).not.toMatch(/tel-0|cus_tel|[0-9a-f]{8}-[0-9a-f]{4}-7/);

  const events = await h.rows<{ trace_id: string | null; status: string }>(`SELECT trace_id, status::text FROM meter_events WHERE identifier LIKE 'tel-%'`);
  expect(events).toHaveLength(21);
  expect(events.every((e) => e.trace_id === ingestTrace)).toBe(true);
  const attempts = await h.rows<{ trace_id: string | null }>(
    `SELECT a.trace_id FROM event_attempts a JOIN meter_events e ON e.id = a.meter_event_id WHERE e.identifier LIKE 'tel-%'`,
  );
  expect(attempts.length).toBeGreaterThanOrEqual(21);
  expect(attempts.every((a) => /^[0-9a-f]{32}$/.test(a.trace_id ?? '') && a.trace_id !== ingestTrace)).toBe(true);
});
