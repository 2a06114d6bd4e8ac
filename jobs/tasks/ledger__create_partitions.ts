// Crontab (daily): creates the ledger's month partitions ahead of time (app/billing/ledger/partitions.ts, ADR 032).
import type { Task } from 'graphile-worker';
import { createPartitionsAhead } from '../../app/billing/ledger/partitions';

export const ledgerCreatePartitions: Task = async (_payload, helpers) => {
  const created = await helpers.withPgClient((client) => createPartitionsAhead(client));
  if (created.length > 0) helpers.logger.info(`ledger__create_partitions: created ${created.join(', ')}`);
};
