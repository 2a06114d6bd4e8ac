// A database ready for the processes: the schema (app/db/prepare.ts) and the base data every installation needs.
import { createPrisma } from '../db/clients';
import { prepareSchema } from '../db/prepare';
import { seedBase } from './base';

export async function prepareDatabase(connectionString: string): Promise<void> {
  await prepareSchema(connectionString);
  const prisma = createPrisma(connectionString);
  try {
    await seedBase(prisma);
  } finally {
    await prisma.$disconnect();
  }
}
