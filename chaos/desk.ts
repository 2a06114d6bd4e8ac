// Operator actions from the desk under the campaign's faults: an operator and a finance user sign in through the
// login form (through the proxy, so each form may land on either web process), then at times the seed picks they
// retry every failed Stripe event (the events page's "retry all matching"), re-author a closed window, settle a failed
// window again and write off an exhausted one — as a person would, with the page's form fields and its submission key.
// An answer lost to a fault (503 from a restarting database, 502 from the proxy, a cut connection) is sent again with
// the same key after a short wait, as the browser's resend would; a 400 is the form refusing (the window moved on) and
// is recorded; a 500, or any other answer, is a violation. chaos/invariants.ts (checkOperatorActions) checks what the
// actions left behind.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { createUser } from '../app/billing/access/users';
import { createPrisma } from '../app/db/clients';
import { sleep } from './plan';

export const DESK_ACTIONS = ['retry_filter', 'reauthor', 'settle_again', 'write_off'] as const;
export type DeskAction = (typeof DESK_ACTIONS)[number];

export interface DeskActionStats {
  /** Actions sent (a resend of the same submission counted once here, and in `retried`). */
  sent: number;
  /** Answered with the action's redirect. */
  ok: number;
  /** Answered 400: the form refused (nothing to retry, the window in another state). */
  refused: number;
  /** Resends with the same submission key after a lost answer (502, 503, 409 or a cut connection). */
  retried: number;
  byKind: Record<DeskAction, number>;
}

export interface DeskRecord {
  /** Windows whose write-off answered with its redirect. */
  writtenOff: string[];
  /** Windows whose re-author answered with its redirect. */
  reauthored: string[];
}

interface Credentials {
  email: string;
  password: string;
}

/** An operator and a finance user, created as `bench/desk.ts` creates its operator. */
export async function createDeskUsers(connectionString: string, seed: number): Promise<{ operator: Credentials; finance: Credentials }> {
  const prisma = createPrisma(connectionString);
  try {
    const make = async (role: 'operator' | 'finance'): Promise<Credentials> => {
      const email = `chaos-${role}-${seed}@meterdesk.local`;
      const password = randomBytes(18).toString('base64url');
      await createUser(prisma, { email, role, password });
      return { email, password };
    };
    return { operator: await make('operator'), finance: await make('finance') };
  } finally {
    await prisma.$disconnect();
  }
}

export interface DeskOptions {
  baseUrl: string;
  pool: pg.Pool;
  random: () => number;
  log: (line: string) => void;
  violations: string[];
  seed: number;
}

type Answer = { status: number; location: string | null; body: string; setCookie: string[] };

export class DeskOperators {
  readonly stats: DeskActionStats = { sent: 0, ok: 0, refused: 0, retried: 0, byKind: Object.fromEntries(DESK_ACTIONS.map((k) => [k, 0])) as Record<DeskAction, number> };
  readonly record: DeskRecord = { writtenOff: [], reauthored: [] };
  private operatorCookie = '';
  private financeCookie = '';
  private keys = 0;

  constructor(private readonly o: DeskOptions) {}

  private async request(path: string, form: Record<string, string>, cookie: string): Promise<Answer> {
    const body = new URLSearchParams(form).toString();
    const res = await fetch(`${this.o.baseUrl}${path}`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: this.o.baseUrl, ...(cookie ? { cookie } : {}) },
      body,
      signal: AbortSignal.timeout(20_000),
    });
    return { status: res.status, location: res.headers.get('location'), body: await res.text().catch(() => ''), setCookie: res.headers.getSetCookie() };
  }

  /** Sends a form until it gets a definite answer: the same form (the same submission key) after a lost one. */
  private async sendUntilAnswered(path: string, form: Record<string, string>, cookie: string, countRetries: boolean): Promise<Answer> {
    let last = '';
    for (let attempt = 0; attempt <= 40; attempt++) {
      if (attempt > 0) {
        if (countRetries) this.stats.retried++;
        await sleep(300 + attempt * 100);
      }
      let a: Answer;
      try {
        a = await this.request(path, form, cookie);
      } catch (error) {
        last = (error as Error).message;
        continue;
      }
      // 503: the database was restarting, nothing changed; 502: the proxy lost the answer; 409: the first send of
      // this key is still running (its answer will be the same redirect).
      if (a.status === 502 || a.status === 503 || a.status === 409) {
        last = `${a.status} ${a.body.slice(0, 120)}`;
        continue;
      }
      return a;
    }
    throw new Error(`desk ${path}: no definite answer after 40 attempts: ${last}`);
  }

  private async login(who: Credentials): Promise<string> {
    const a = await this.sendUntilAnswered('/login', { email: who.email, password: who.password }, '', false);
    const session = a.setCookie.map((c) => c.split(';')[0]!).find((c) => /^(__Host-)?md_session=./.test(c));
    if (a.status !== 302 || !session) throw new Error(`desk login of ${who.email} answered ${a.status}: ${a.body.slice(0, 200)}`);
    return session;
  }

  async signIn(users: { operator: Credentials; finance: Credentials }): Promise<void> {
    this.operatorCookie = await this.login(users.operator);
    this.financeCookie = await this.login(users.finance);
  }

  private submission(kind: DeskAction): string {
    return `chaos-${this.o.seed}-${kind}-${++this.keys}-${randomBytes(4).toString('hex')}`;
  }

  /** One action; its answer classified. */
  private async act(kind: DeskAction, path: string, form: Record<string, string>, cookie: string, onOk?: () => void): Promise<void> {
    this.stats.sent++;
    this.stats.byKind[kind]++;
    const a = await this.sendUntilAnswered(path, { ...form, submission: this.submission(kind) }, cookie, true);
    if ((a.status === 302 || a.status === 303) && a.location && !/\/login\b/.test(a.location)) {
      this.stats.ok++;
      onOk?.();
      this.o.log(`  seed ${this.o.seed}: desk ${kind} ${path} → ${a.status} ${a.location}`);
    } else if (a.status === 400) {
      this.stats.refused++;
      this.o.log(`  seed ${this.o.seed}: desk ${kind} ${path} → 400 (refused)`);
    } else {
      const text = a.body.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300);
      this.o.violations.push(`desk ${kind} ${path} answered ${a.status}${a.location ? ` → ${a.location}` : ''}: ${text}`);
    }
  }

  private async pickWindow(states: string[], extra = 'true'): Promise<string | null> {
    const { rows } = await this.queryThroughRestarts<{ id: string }>(
      `SELECT w.id FROM windows w LEFT JOIN charge_attempts a ON a.window_id = w.id WHERE w.state::text = ANY($1::text[]) AND ${extra} ORDER BY w.id`,
      [states],
    );
    return rows.length === 0 ? null : rows[Math.floor(this.o.random() * rows.length)]!.id;
  }

  /**
   * The operator's own look at the database (which window to act on), asked again while the campaign restarts the
   * database or drops its connections, as an operator would reload the page. Only this read of the harness is
   * retried here; the desk's forms are re-sent in sendUntilAnswered, under the same submission key.
   */
  private async queryThroughRestarts<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.o.pool.query<R>(sql, params);
      } catch (error) {
        if (attempt >= 40) throw error;
        await sleep(300 + attempt * 100);
      }
    }
  }

  /**
   * The action the seed chose, or when it has no window to act on, the first one that has; sometimes aimed at a
   * window in another state on purpose (the form must refuse it with a sentence, not fail).
   */
  async runOne(preferred: DeskAction): Promise<void> {
    const wrongState = this.o.random() < 0.2;
    const order = [preferred, ...DESK_ACTIONS.filter((k) => k !== preferred)];
    for (const kind of order) {
      switch (kind) {
        case 'retry_filter':
          // The events page's filters (failed Stripe events) in the action's URL, as the confirm form posts them.
          await this.act(kind, '/events?status=failed&processor=stripe', { intent: 'retry-filter', anyway: 'on' }, this.operatorCookie);
          return;
        case 'reauthor': {
          const id = await this.pickWindow(wrongState ? ['paid', 'retry_scheduled'] : ['closed', 'awaiting_payment_method'], wrongState ? 'true' : 'coalesce(a.tries, 0) = 0');
          if (!id) break;
          await this.act(kind, `/windows/${id}`, { intent: 'reauthor', reason: 'chaos: usage corrected' }, this.operatorCookie, () => this.record.reauthored.push(id));
          return;
        }
        case 'settle_again': {
          const id = await this.pickWindow(wrongState ? ['paid', 'written_off'] : ['failed_exhausted', 'retry_scheduled', 'awaiting_payment_method']);
          if (!id) break;
          await this.act(kind, `/windows/${id}`, { intent: 'settle-again', reason: 'chaos: customer asked', overrideHardDecline: 'on' }, this.operatorCookie);
          return;
        }
        case 'write_off': {
          const id = await this.pickWindow(wrongState ? ['paid', 'awaiting_payment_method'] : ['failed_exhausted']);
          if (!id) break;
          await this.act(kind, `/windows/${id}/write-off`, { intent: 'write-off', reason: 'chaos: uncollectable' }, this.financeCookie, () => this.record.writtenOff.push(id));
          return;
        }
      }
    }
  }
}
