// The counters the server keeps itself (the API and the meter event book keep theirs; stats() adds them up).
import { FAULT_KINDS, type FaultKind } from './faults';
import type { StripeSimulatorStats } from './types';

export type TransportStats = Omit<StripeSimulatorStats, 'v1MeterEventsAccepted' | 'v2EventsAccepted' | 'v2EventsRejected' | 'duplicateIdentifiers' | 'rejectedAfterAccept' | 'cancelled' | 'byStatus'>;

export function emptyStats(): TransportStats {
  const faultsApplied = {} as Record<FaultKind, number>;
  for (const k of FAULT_KINDS) faultsApplied[k] = 0;
  return {
    requests: 0,
    rateLimited: 0,
    concurrencyRejected: 0,
    bucketRejected: 0,
    serverErrors: 0,
    idempotentReplays: 0,
    timeoutsHeld: 0,
    connectionsReset: 0,
    errorReportsSent: 0,
    webhooksSent: 0,
    webhooksFailed: 0,
    faultsApplied,
  };
}
