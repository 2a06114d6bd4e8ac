// `npm start` as a newcomer runs it, for the tests that need the demo: the embedded default in a data directory of
// its own, the demo's credentials, and a database client to watch the demo's trouble appear (app/seed/demo.ts
// DEMO_TROUBLE: the worker, the simulators and the crontab make it within a couple of minutes).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';

export interface DemoCredentials {
  apiKey: string;
  users: Array<{ email: string; role: string; password: string }>;
}

export interface StartedDemo {
  child: ChildProcess;
  url: string;
  output(): string;
}

/** `app/cli/main.ts start` on `dataDir` (no DATABASE_URL: the embedded default), resolved once it says it is ready. */
export function startDemo(dataDir: string, timeoutMs = 90_000): Promise<StartedDemo> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' };
  delete env.DATABASE_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`start timed out:\n${out}`)), timeoutMs);
    const onData = (c: Buffer) => {
      out += c.toString();
      const m = /Ctrl-C stops everything/.test(out) && /desk and API\s+(http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!.replace('localhost', '127.0.0.1'), output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`start exited ${code}:\n${out}`)));
  });
}

/** Ctrl-C, as a person stops it; resolves with the exit code. */
export function stopDemo(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill('SIGINT');
  });
}

export const demoCredentials = async (dataDir: string): Promise<DemoCredentials> =>
  JSON.parse(await readFile(path.join(dataDir, 'demo-credentials.json'), 'utf8')) as DemoCredentials;

/** A client of the demo's embedded PostgreSQL (as its superuser, from the data directory). */
export async function demoDatabase(dataDir: string): Promise<pg.Client> {
  const state = JSON.parse(await readFile(path.join(dataDir, 'postgres.json'), 'utf8')) as { port: number };
  const password = await readFile(path.join(dataDir, 'postgres', 'meterdesk-password'), 'utf8');
  const client = new pg.Client({ connectionString: `postgresql://postgres:${password.trim()}@127.0.0.1:${state.port}/postgres` });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** The demo's trouble as lines: failed events per customer, and every window past `open` with its charge status. */
export async function demoTrouble(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ line: string }>(
    `SELECT c.external_id || ' event ' || e.status::text || ' ' || count(*) AS line FROM meter_events e JOIN customers c ON c.id = e.customer_id
      WHERE e.status = 'failed' GROUP BY c.external_id, e.status
     UNION ALL
     SELECT c.external_id || ' window ' || w.state::text || CASE WHEN w.stale_repaired THEN ' stale repaired' ELSE '' END || ' ' || coalesce(a.status::text, '-')
       FROM windows w JOIN customers c ON c.id = w.customer_id LEFT JOIN charge_attempts a ON a.window_id = w.id WHERE w.state <> 'open'`,
  );
  return rows.map((r) => r.line).sort();
}

/** What the demo's trouble comes to once the worker, the simulators and the crontab have run. */
export const DEMO_TROUBLE_LINES = [
  'acme event failed 3', // api_calls: no meter at Stripe
  'hooli window awaiting_payment_method stale repaired pending',
  'soylent window retry_scheduled stale repaired soft_declined',
  'stark window failed_exhausted stale repaired hard_declined',
  'wayne event failed 56', // a customer the demo's Stripe does not know
];

/** Waits (the crontab runs each minute) until every line of DEMO_TROUBLE_LINES is there; returns what it saw last. */
export async function waitForDemoTrouble(client: pg.Client, timeoutMs = 150_000): Promise<string[]> {
  let seen: string[] = [];
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 1000))) {
    seen = await demoTrouble(client);
    if (DEMO_TROUBLE_LINES.every((line) => seen.includes(line))) break;
  }
  return seen;
}
