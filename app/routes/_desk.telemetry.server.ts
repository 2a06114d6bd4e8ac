// The telemetry page's inputs: the range from the query string. Reads are TelemetryPresenter (app/billing/overview.ts).
import { z } from 'zod';
import { TELEMETRY_RANGES, type TelemetryRange } from '../billing/overview';

const RangeSchema = z.enum(Object.keys(TELEMETRY_RANGES) as [TelemetryRange, ...TelemetryRange[]]).catch('24h');

export function parseTelemetryRange(url: URL): TelemetryRange {
  return RangeSchema.parse(url.searchParams.get('range') ?? undefined);
}
