// An audit entry's before/after as a readable field-by-field comparison instead of two JSON blobs.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function AuditChange({ before, after }: { before: unknown; after: unknown }) {
  const b = asRecord(before);
  const a = asRecord(after);
  if (!b && !a) {
    if (before == null && after == null) return <span className="muted">—</span>;
    return (
      <dl className="audit-change-raw">
        {before != null ? (
          <>
            <dt>Before</dt>
            <dd>{format(before as Json)}</dd>
          </>
        ) : null}
        {after != null ? (
          <>
            <dt>After</dt>
            <dd>{format(after as Json)}</dd>
          </>
        ) : null}
      </dl>
    );
  }
  const keys = [...new Set([...Object.keys(b ?? {}), ...Object.keys(a ?? {})])];
  return (
    <table className="audit-change">
      <thead>
        <tr>
          <th scope="col">Field</th>
          {b ? <th scope="col">Before</th> : null}
          {a ? <th scope="col">After</th> : null}
        </tr>
      </thead>
      <tbody>
        {keys.map((key) => {
          const changed = Boolean(b && a) && JSON.stringify(b?.[key]) !== JSON.stringify(a?.[key]);
          return (
            <tr key={key} className={changed ? 'changed' : undefined}>
              <th scope="row">
                {key}
                {changed ? <span className="visually-hidden"> (changed)</span> : null}
              </th>
              {b ? <td>{key in b ? format(b[key]!) : <span className="muted">—</span>}</td> : null}
              {a ? <td>{key in a ? format(a[key]!) : <span className="muted">—</span>}</td> : null}
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function asRecord(value: unknown): Record<string, Json> | null {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, Json>) : null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LISTED = 3;

/** A value as a person reads it: ids shortened, lists counted, objects as `field: value`. */
export function format(value: Json): string {
  if (value === null) return 'none';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'number') return value.toLocaleString('en-US');
  if (typeof value === 'string') return UUID.test(value) ? `${value.slice(0, 8)}…` : value;
  if (Array.isArray(value)) {
    if (value.length === 0) return 'none';
    const shown = value.slice(0, LISTED).map(format).join(', ');
    return value.length > LISTED ? `${value.length.toLocaleString('en-US')}: ${shown} and ${(value.length - LISTED).toLocaleString('en-US')} more` : shown;
  }
  return Object.entries(value)
    .map(([k, v]) => `${k}: ${format(v)}`)
    .join('; ');
}
