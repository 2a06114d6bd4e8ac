import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

import { ensureFreshBuild } from '../support/desk-build';

// initdb, migrations and the seed take ~6 s here; a loaded CI machine gets plenty of margin.
const STARTUP_TIMEOUT_MS = 90_000;

/**
 * Builds the desk if its sources changed since the last build, then starts test/browser/serve.ts in its own process on a free port (PLAYWRIGHT_PORT pins one), and hands its URL to
 * the workers through MD_BASE_URL, which they inherit and playwright.config.ts reads as baseURL.
 */
export default async function globalSetup() {
  if (process.env.MD_BASE_URL) return; // Someone already runs the app; test against it.
  await ensureFreshBuild();

  const args = ['--import', 'tsx', 'test/browser/serve.ts'];
  if (process.env.PLAYWRIGHT_PORT) args.push('--port', process.env.PLAYWRIGHT_PORT);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve.ts printed no URL within ${STARTUP_TIMEOUT_MS / 1000} s`)), STARTUP_TIMEOUT_MS);
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`serve.ts exited early (code ${code}, signal ${signal})`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const database = /^MD_SERVE_DATABASE_URL=(\S+)$/.exec(line);
      const match = /^MD_SERVE_URL=(\S+)$/.exec(line);
      if (database?.[1]) {
        // Workers inherit it: journeys that need ledger rows write them with SQL.
        process.env.MD_DATABASE_URL = database[1];
      } else if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      } else {
        process.stdout.write(`[serve] ${line}\n`);
      }
    });
  }).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  child.removeAllListeners('exit');
  process.env.MD_BASE_URL = url;

  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
}
