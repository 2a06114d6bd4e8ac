// Run by app/db/embedded-postgres.test.ts as a separate process: starts the embedded server on the given data
// directory, writes a row, prints one JSON line and waits to be killed. SIGTERM goes through stopOnSignals.
import pg from 'pg';
import { startEmbeddedPostgres, stopOnSignals } from '../../app/db/embedded-postgres';

const [dataDir, note = 'from child'] = process.argv.slice(2);
if (!dataDir) throw new Error('usage: embedded-postgres-child.ts <dataDir> [note]');

const server = await startEmbeddedPostgres({ dataDir, ephemeral: true });
stopOnSignals(server.stop);
const client = new pg.Client({ connectionString: server.connectionString });
await client.connect();
await client.query('CREATE TABLE IF NOT EXISTS notes (body text NOT NULL)');
await client.query('INSERT INTO notes (body) VALUES ($1)', [note]);
await client.end();
console.log(JSON.stringify({ pid: server.pid, port: server.port, ownerPid: process.pid }));
