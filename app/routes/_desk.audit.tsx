import { Form, Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.audit';
import { AuditChange } from '../components/audit-change';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { getServices } from '../server/desk-context';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { auditFilterOptions, listAuditEntries, parseAuditFilters } from '../presenters/audit';

export const meta: Route.MetaFunction = () => [{ title: 'Audit log · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'read:audit:any');
  const url = new URL(request.url);
  const filters = parseAuditFilters(url);
  const { pool } = getServices(context);
  const [page, options] = await Promise.all([listAuditEntries(pool, filters), auditFilterOptions(pool)]);
  const toLocal = (d: Date | undefined) => (d ? d.toISOString().slice(0, 16) : '');
  return {
    page,
    options,
    filters: {
      action: filters.action ?? '',
      actor: filters.actor ?? '',
      subjectType: filters.subjectType ?? '',
      subjectId: filters.subjectId ?? '',
      from: toLocal(filters.from),
      to: toLocal(filters.to),
    },
  };
}

export default function AuditPage({ loaderData }: Route.ComponentProps) {
  const { page, options, filters } = loaderData;
  const navigation = useNavigation();
  const loading = navigation.state === 'loading' && navigation.location.pathname === '/audit';
  const filterParams = new URLSearchParams(Object.entries(filters).filter(([, v]) => v !== ''));
  const pageLink = (cursor: string, direction: 'older' | 'newer') => {
    const params = new URLSearchParams(filterParams);
    params.set('cursor', cursor);
    params.set('direction', direction);
    return `/audit?${params}`;
  };
  const filtered = filterParams.size > 0;

  return (
    <>
      <h1>Audit log</h1>
      <p className="lede">Every change made through the desk, the CLI and the jobs, newest first. The database refuses to edit or delete these rows.</p>

      <section aria-labelledby="audit-filters-heading" className="panel">
        <h2 id="audit-filters-heading" className="visually-hidden">
          Filters
        </h2>
        <Form method="get" className="filters" key={filterParams.toString()}>
          <div className="field">
            <label htmlFor="audit-action">Action</label>
            <select id="audit-action" name="action" defaultValue={filters.action}>
              <option value="">Any action</option>
              {options.actions.map((a) => (
                <option key={a} value={a}>
                  {a}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor="audit-actor">Actor</label>
            <input id="audit-actor" name="actor" type="text" list="audit-actors" defaultValue={filters.actor} placeholder="email, or cli / job:…" />
            <datalist id="audit-actors">
              {options.actors.map((a) => (
                <option key={a} value={a} />
              ))}
            </datalist>
          </div>
          <div className="field">
            <label htmlFor="audit-subject-type">Subject type</label>
            <select id="audit-subject-type" name="subjectType" defaultValue={filters.subjectType}>
              <option value="">Any subject</option>
              {options.subjectTypes.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor="audit-subject-id">Subject id</label>
            <input id="audit-subject-id" name="subjectId" type="text" defaultValue={filters.subjectId} />
          </div>
          <div className="field">
            <label htmlFor="audit-from">From (UTC)</label>
            <input id="audit-from" name="from" type="datetime-local" defaultValue={filters.from} />
          </div>
          <div className="field">
            <label htmlFor="audit-to">Before (UTC)</label>
            <input id="audit-to" name="to" type="datetime-local" defaultValue={filters.to} />
          </div>
          <div className="form-actions">
            <button type="submit" className="button button-primary">
              Apply filters
            </button>
            {filtered ? (
              <Link to="/audit" className="button button-quiet">
                Clear
              </Link>
            ) : null}
          </div>
        </Form>
      </section>

      <section aria-labelledby="audit-entries-heading" aria-busy={loading}>
        <h2 id="audit-entries-heading" className="visually-hidden">
          Entries
        </h2>
        {page.entries.length === 0 ? (
          <p className="empty">{filtered ? 'No entries match these filters.' : 'Nothing has been audited yet.'}</p>
        ) : (
          <div className="table-scroll" role="region" aria-label="Audit entries" tabIndex={0}>
            <table className="data-table audit-table">
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Actor</th>
                  <th scope="col">Action</th>
                  <th scope="col">Subject</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Change</th>
                </tr>
              </thead>
              <tbody>
                {page.entries.map((e) => (
                  <tr key={e.id}>
                    <td className="nowrap" data-label="When">
                      {formatTimestamp(e.at)}
                    </td>
                    <td data-label="Actor">
                      <span>
                        {e.actorLabel}
                        {e.actorRole ? <span className={`badge badge-role-${e.actorRole}`}>{e.actorRole}</span> : null}
                      </span>
                    </td>
                    <td data-label="Action">
                      <code>{e.action}</code>
                    </td>
                    <td data-label="Subject">
                      <span>
                        {e.subjectType}
                        {e.subjectId ? <code className="block subject-id">{e.subjectId}</code> : null}
                      </span>
                    </td>
                    <td data-label="Reason">{e.reason ?? <span className="muted">—</span>}</td>
                    <td data-label="Change">
                      <AuditChange before={e.before} after={e.after} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <nav aria-label="Audit log pages" className="pagination">
          {page.newer ? (
            <Link to={pageLink(page.newer, 'newer')} rel="prev">
              ← Newer
            </Link>
          ) : null}
          {page.older ? (
            <Link to={pageLink(page.older, 'older')} rel="next">
              Older →
            </Link>
          ) : null}
        </nav>
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
