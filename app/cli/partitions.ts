// `npm run cli -- partitions list | create-ahead | archive --before YYYY-MM --to DIR [--dry-run] [--forget-identifiers]`:
// the ledger's month partitions (app/billing/ledger/partitions.ts, ADR 032). Exit 0: done; 1: a partition could not
// be archived (its blockers are printed); 2: bad arguments.
import { parseArgs } from 'node:util';
import { createPool } from '../db/clients';
import { archivePartition, createPartitionsAhead, listPartitions, planArchive, type LedgerPartition } from '../billing/ledger/partitions';
import { BillingError } from '../billing/errors';

const CLI_ACTOR = { userId: null, label: 'cli', role: null };
const MONTH = /^(\d{4})-(0[1-9]|1[0-2])$/;

export async function partitionsCommand(connectionString: string, argv: string[], out: (line: string) => void = console.log): Promise<number> {
  const [sub, ...rest] = argv;
  const pool = createPool(connectionString, 1);
  try {
    if (sub === 'list') {
      out(['partition', 'from', 'to', 'rows (estimate)', 'size'].join('\t'));
      for (const p of await listPartitions(pool)) out(row(p).join('\t'));
      return 0;
    }
    if (sub === 'create-ahead') {
      const created = await createPartitionsAhead(pool);
      out(created.length > 0 ? `created ${created.join(', ')}` : 'every partition ahead exists already');
      return 0;
    }
    if (sub !== 'archive') {
      console.error('usage: npm run cli -- partitions list | create-ahead | archive --before YYYY-MM --to DIR [--dry-run] [--forget-identifiers]');
      return 2;
    }
    const { values } = parseArgs({
      args: rest,
      options: { before: { type: 'string' }, to: { type: 'string' }, 'dry-run': { type: 'boolean' }, 'forget-identifiers': { type: 'boolean' } },
    });
    const month = MONTH.exec(values.before ?? '');
    if (!month) {
      console.error('--before takes a month, YYYY-MM: partitions that end on or before its first day (UTC) are archived');
      return 2;
    }
    if (!values['dry-run'] && !values.to) {
      console.error('--to DIR names the directory the archive files are written to (or pass --dry-run)');
      return 2;
    }
    const before = new Date(Date.UTC(Number(month[1]), Number(month[2]) - 1, 1));
    const plan = await planArchive(pool, { before });
    if (plan.partitions.length === 0) {
      out(`no partition ends on or before ${values.before}-01`);
      return 0;
    }
    for (const c of plan.partitions) {
      out(`${c.partition.name}: ${c.events} event(s), ${formatBytes(c.partition.bytes)}${c.blockers.length === 0 ? ', can be archived' : ''}`);
      for (const b of c.blockers) out(`  not yet: ${b}`);
    }
    if (!plan.archivable) return 1;
    if (values['dry-run']) {
      out(`dry run: nothing written. Without --dry-run each is written to ${values.to ?? 'DIR'}/<partition>/ and then detached and dropped.`);
      return 0;
    }
    const client = await pool.connect();
    try {
      for (const c of plan.partitions) {
        const a = await archivePartition(client, c.partition.name, { dir: values.to!, actor: CLI_ACTOR, forgetIdentifiers: values['forget-identifiers'] });
        out(`archived ${a.name}: ${a.events.rows} event(s), ${a.attempts.rows} attempt(s), ${a.conflicts.rows} conflict(s); events sha256 ${a.events.sha256}`);
      }
    } finally {
      client.release();
    }
    return 0;
  } catch (error) {
    if (error instanceof BillingError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  } finally {
    await pool.end();
  }
}

function row(p: LedgerPartition): string[] {
  return [p.name, p.from?.toISOString().slice(0, 10) ?? '(start)', p.to.toISOString().slice(0, 10), String(Math.round(p.estimatedRows)), formatBytes(p.bytes)];
}

function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
