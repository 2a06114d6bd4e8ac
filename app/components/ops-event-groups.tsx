// Ops events grouped by type, processor and source (readOpsEventGroups): one row of counts per group, opened (a
// native <details>, no JavaScript needed) to its latest members with links to their subjects, and the runbook.
import { Link } from 'react-router';
import type { OpsEventGroup, OpsEventMember } from '../billing/overview';
import { runbookFor } from '../billing/runbooks';
import { formatTimestamp } from '../utils/misc';

const count = (n: number) => n.toLocaleString('en-US');

export function groupName(g: Pick<OpsEventGroup, 'type' | 'processor' | 'source'>): string {
  return [g.type, g.processor, g.source].filter(Boolean).join(' · ');
}

export function OpsEventGroups({ groups, label, openOnly = false }: { groups: OpsEventGroup[]; label: string; openOnly?: boolean }) {
  return (
    <ul className="ops-groups" aria-label={label} style={{ listStyle: 'none', padding: 0, margin: 0 }}>
      {groups.map((g) => {
        const runbook = runbookFor(g.type);
        const shown = g.latest.length;
        const total = openOnly ? g.open : g.open + g.resolved;
        return (
          <li key={groupName(g)} style={{ borderBottom: '1px solid var(--rule)', padding: '0.5rem 0' }}>
            <details>
              <summary>
                <strong>{runbook?.title ?? g.type}</strong> <code className="muted">{groupName(g)}</code>
                <span className="block">
                  {count(g.open)} open, {count(g.resolved)} resolved · first seen {formatTimestamp(g.firstAt)} · last seen {formatTimestamp(g.lastAt)}
                </span>
              </summary>
              <p className="muted">
                {shown < total ? `The latest ${count(shown)} of ${count(total)}${openOnly ? ' open' : ''}:` : `All ${count(total)}${openOnly ? ' open' : ''}:`}
              </p>
              <ul>
                {g.latest.map((m) => (
                  <li key={m.id}>
                    {formatTimestamp(m.occurredAt)} <SubjectLink member={m} /> {m.resolved ? <span className="muted">(resolved)</span> : null}
                  </li>
                ))}
              </ul>
              {runbook ? (
                <p>
                  <Link to={`/telemetry#runbook-${g.type}`}>
                    Runbook: {runbook.title}
                    <span className="visually-hidden">{` (${groupName(g)})`}</span>
                  </Link>
                </p>
              ) : null}
            </details>
          </li>
        );
      })}
    </ul>
  );
}

function SubjectLink({ member }: { member: OpsEventMember }) {
  const { subjectType: type, subjectId: id } = member;
  if (!type || !id) return <span className="muted">no subject</span>;
  if (type === 'meter_event') return <Link to={`/events/${id}`}>Event {id.slice(0, 8)}…</Link>;
  if (type === 'window') return <Link to={`/windows/${id}`}>Window {id.slice(0, 8)}…</Link>;
  if (type === 'customer') return <Link to={`/customers/${id}`}>Customer {id.slice(0, 8)}…</Link>;
  return (
    <span>
      {type} <code>{id.slice(0, 8)}…</code>
    </span>
  );
}
