// A database ready for the processes: the schema (app/db/prepare.ts), the ledger's partitions ahead and the base data
// every installation needs.
import { createPool, createPrisma } from '../db/clients';
import type { MigrateOptions } from '../db/migrate';
import { prepareSchema } from '../db/prepare';
import { createPartitionsAhead } from '../billing/ledger/partitions';
import { seedBase } from './base';

export async function prepareDatabase(connectionString: string, options: MigrateOptions = {}): Promise<void> {
  await prepareSchema(connectionString, options);
  const pool = createPool(connectionString, 1);
  try {
    await createPartitionsAhead(pool);
  } finally {
    await pool.end();
  }
  const prisma = createPrisma(connectionString);
  try {
    await seedBase(prisma);
  } finally {
    await prisma.$disconnect();
  }
}
