// A desk form submission runs once. Every state-changing form carries a key (components/submission-key.tsx: new on
// every render of the page); the action runs inside `onceForSubmission`, which records the key before running it.
// A second POST with the same key (a double click, a resent form, a retried request) does not run the action again:
// it waits for the first to finish and answers with the first one's redirect. A submission that ends without a
// redirect (a form error) forgets its key, so the corrected form can be sent again.
import { redirect } from 'react-router';
import { databaseUnavailable } from '../db/read-pool';
import { getServices } from '../server/desk-context';

export const SUBMISSION_FIELD = 'submission';

const KEY = /^[A-Za-z0-9._:-]{8,120}$/;
const WAIT_MS = 15_000;
/**
 * A key claimed this long ago that still has no answer belongs to a submission whose process died mid-action (a
 * SIGKILL, a crash): its transaction never committed, so the next send with that key takes the claim over and runs.
 * Longer than any desk action takes; an action that did take longer is still guarded by its own state machine.
 */
const ABANDONED_AFTER_S = 30;
const POLL_MS = 100;

type Context = Parameters<typeof getServices>[0];

/** The submission's key from the form, if it carries a well-formed one. */
export async function submissionKeyOf(request: Request): Promise<string | null> {
  const value = (await request.clone().formData()).get(SUBMISSION_FIELD);
  return typeof value === 'string' && KEY.test(value) ? value : null;
}

/**
 * Runs a desk action once per submission. An action the database could not run (restarting, the connection cut)
 * answers 503 with a sentence and Retry-After, not a 500: its transaction did not commit, and sending the same form
 * again runs it (the key is forgotten when the database lets us).
 */
export async function onceForSubmission<T>(request: Request, context: Context, run: () => Promise<T>): Promise<T | Response> {
  try {
    return await runOnce(request, context, run);
  } catch (thrown) {
    if (!databaseUnavailable(thrown)) throw thrown;
    throw new Response('The database did not answer (it may be restarting), so nothing was changed. Send the form again in a moment.', {
      status: 503,
      statusText: 'Service Unavailable',
      headers: { 'retry-after': '2', 'content-type': 'text/plain; charset=utf-8' },
    });
  }
}

async function runOnce<T>(request: Request, context: Context, run: () => Promise<T>): Promise<T | Response> {
  const key = await submissionKeyOf(request);
  if (!key) return run();
  const { pool } = getServices(context);
  const path = new URL(request.url).pathname;
  await pool.query(`DELETE FROM desk_submissions WHERE created_at < now() - interval '1 day'`);
  const claimed = await pool.query(`INSERT INTO desk_submissions (key, path) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, [key, path]);
  if (claimed.rowCount === 0) {
    const abandoned = await pool.query(
      `UPDATE desk_submissions SET created_at = now() WHERE key = $1 AND path = $2 AND location IS NULL AND created_at < now() - make_interval(secs => $3)`,
      [key, path, ABANDONED_AFTER_S],
    );
    if (abandoned.rowCount === 0) return replay(pool, key, path, () => runOnce(request, context, run));
  }
  let outcome: T | Response;
  try {
    outcome = await run();
  } catch (thrown) {
    // When the database itself is what failed, forgetting the key may fail too: the first error is the answer.
    await settle(pool, key, thrown).catch((error: unknown) => {
      if (!databaseUnavailable(error)) throw error;
    });
    throw thrown;
  }
  await settle(pool, key, outcome);
  return outcome;
}

type Pool = ReturnType<typeof getServices>['pool'];

const locationOf = (outcome: unknown): string | null =>
  outcome instanceof Response && outcome.status >= 300 && outcome.status < 400 ? outcome.headers.get('location') : null;

async function settle(pool: Pool, key: string, outcome: unknown): Promise<void> {
  const location = locationOf(outcome);
  if (location) await pool.query(`UPDATE desk_submissions SET location = $2 WHERE key = $1`, [key, location]);
  else await pool.query(`DELETE FROM desk_submissions WHERE key = $1`, [key]);
}

/** The same key again: the first submission's redirect once it has one; if it ended in a form error, run this one. */
async function replay<T>(pool: Pool, key: string, path: string, again: () => Promise<T | Response>): Promise<T | Response> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const { rows } = await pool.query<{ path: string; location: string | null }>(`SELECT path, location FROM desk_submissions WHERE key = $1`, [key]);
    const row = rows[0];
    if (!row) return again();
    if (row.path !== path) throw new Response('This form key belongs to another form.', { status: 400, statusText: 'Bad request' });
    if (row.location) return redirect(row.location);
    if (Date.now() > deadline) {
      throw new Response('This form was already sent and is still being processed. Reload the page in a moment to see its result.', {
        status: 409,
        statusText: 'Conflict',
      });
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
