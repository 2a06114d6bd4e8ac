// The command line as a newcomer uses it: `start` on the embedded default, and the admin commands.
import { execFile } from 'node:child_process';
import { mkdtemp, chmod, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database';
import { DEMO_TROUBLE_LINES, demoCredentials, demoDatabase, startDemo, stopDemo, waitForDemoTrouble } from './support/demo';

const run = promisify(execFile);
const cli = (args: string[], env: Record<string, string>) =>
  run(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', ...args], { env: { ...process.env, ...env }, timeout: 60_000 });

describe('admin commands', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db?.drop());

  it('migrate, apikey create (key alone on the last line, stored hashed), user create', async () => {
    const env = { DATABASE_URL: db.connectionString };
    expect((await cli(['migrate'], env)).stdout).toMatch(/up to date/);
    const { stdout } = await cli(['apikey', 'create', '--name', 'host app'], env);
    const key = stdout.trimEnd().split('\n').at(-1)!;
    expect(key).toMatch(/^md_[A-Za-z0-9_-]{43}$/);
    const pg = (await import('pg')).default;
    const client = new pg.Client({ connectionString: db.connectionString });
    client.on('error', () => {}); // dropping the database at teardown terminates it; that is not a failure of this test
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT name, prefix, key_hash FROM api_keys WHERE name = 'host app'`);
      expect(rows).toHaveLength(1);
      expect(rows[0].key_hash).not.toContain(key);
      expect(key.startsWith(rows[0].prefix)).toBe(true);
      const users = await cli(['user', 'create', '--email', 'Op@Example.test', '--role', 'operator'], env);
      const password = users.stdout.trimEnd().split('\n').at(-1)!;
      expect(password.length).toBeGreaterThanOrEqual(20);
      const u = await client.query(`SELECT u.email, u.password_hash, r.name AS role FROM users u JOIN roles r ON r.id = u.role_id`);
      expect(u.rows).toEqual([{ email: 'op@example.test', password_hash: expect.stringMatching(/^\$argon2id\$/), role: 'operator' }]);
    } finally {
      await client.end();
    }
    await expect(cli(['user', 'create', '--email', 'x@example.test', '--role', 'superuser'], env)).rejects.toMatchObject({ code: 1 });
    await expect(cli(['apikey', 'create'], env)).rejects.toMatchObject({ code: 2 });
    // Five `tsx` process starts: seconds each on a busy two-core CI machine.
  }, 180_000);
});

describe('npm start on the embedded default', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'meterdesk-start-'));
    await chmod(dataDir, 0o755);
  });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));

  const start = () => startDemo(dataDir);
  const stop = stopDemo;
  const postgresAlive = async () => {
    const state = JSON.parse(await readFile(path.join(dataDir, 'postgres.json'), 'utf8').catch(() => '{}')) as { pid?: number | null };
    if (!state.pid) return false;
    try {
      process.kill(state.pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('serves /healthz, accepts a first event with the demo key, shows the demo trouble, stops cleanly, and restarts on the same data', async () => {
    const first = await start();
    expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
    const creds = await demoCredentials(dataDir);
    expect(first.output()).toContain(creds.apiKey);
    const res = await fetch(`${first.url}/api/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${creds.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ customer: 'acme', event_name: 'ai_tokens', value: 1250, identifier: 'first-curl' }),
    });
    expect(res.status).toBe(202);

    // The demo's trouble (app/seed/demo.ts DEMO_TROUBLE), made by the real path: the worker reports to the simulated
    // Stripe, the crontab repairs the stale renewals, and the sales meet the vaulted cards' declines.
    const client = await demoDatabase(dataDir);
    let seen: string[];
    try {
      seen = await waitForDemoTrouble(client);
    } finally {
      await client.end();
    }
    expect(seen).toEqual(expect.arrayContaining(DEMO_TROUBLE_LINES));

    expect(await stop(first.child), first.output()).toBe(0);
    // A quiet Ctrl-C: draining and stopped, no connection errors from clients the shutdown itself ended.
    expect(first.output().slice(first.output().indexOf('Ctrl-C stops everything'))).not.toMatch(/terminating connection|database client error|Connection terminated/);
    expect(await postgresAlive()).toBe(false);

    const second = await start();
    const again = await fetch(`${second.url}/api/v1/events?identifier=first-curl`, { headers: { authorization: `Bearer ${creds.apiKey}` } });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ identifier: 'first-curl', value: 1250, customer: 'acme' });
    expect(await stop(second.child), second.output()).toBe(0);
    expect(await postgresAlive()).toBe(false);
  }, 360_000);
});
