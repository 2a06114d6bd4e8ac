// OpenTelemetry's metrics API has no proxy: a meter taken before the SDK is registered is a no-op forever, and
// modules are imported before startTelemetry() runs. Instruments are therefore created on first use and again
// whenever the global provider changes.
import { metrics } from '@opentelemetry/api';

export function lazyInstrument<T>(create: (meter: ReturnType<typeof metrics.getMeter>) => T, meterName: string): () => T {
  let provider: unknown;
  let instrument: T | undefined;
  return () => {
    const current = metrics.getMeterProvider();
    if (instrument === undefined || current !== provider) {
      provider = current;
      instrument = create(metrics.getMeter(meterName));
    }
    return instrument;
  };
}
