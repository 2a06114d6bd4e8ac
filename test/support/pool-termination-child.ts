// For app/db/clients.test.ts: checks out a client from createPool, has the server end its connection between two
// queries (as a restart or failover does), and prints `survived` if the process lives on and the pool still serves.
import { createPool } from '../../app/db/clients';

const pool = createPool(process.env.DATABASE_URL!, 2);
const client = await pool.connect();
const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
// Not events.once: it rejects on 'error', which is exactly the event under test.
const ended = new Promise((resolve) => client.once('end', resolve));
await pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
await ended;
client.release();
const again = await pool.query<{ ok: number }>('SELECT 1 AS ok');
console.log(`survived ${again.rows[0]!.ok}`);
await pool.end();
