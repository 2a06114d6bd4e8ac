// The web and worker processes share createPool: a connection the server ends under a checked-out client (database
// restart, failover, pg_terminate_backend) must cost that client, never the process. The check runs in a child
// process, because without a client error listener the failure is the process dying.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/support/database';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db?.drop());

it('survives the server ending the connection of a checked-out client', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/pool-termination-child.ts'], {
    env: { ...process.env, DATABASE_URL: db.connectionString },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(out).toContain('survived 1');
  expect(code).toBe(0);
});
