import { Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.audit';
import { AuditChange } from '../components/audit-change';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { getServices } from '../server/desk-context';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { auditActionWords, auditFilterOptions, auditSubjectHref, listAuditEntries, parseAuditFilters } from '../presenters/audit';
import { DeskTable, FilterBar, FilterInput, FilterSelect, KeysetPager, Missing } from '../components/desk-table';

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
  const filtered = Object.values(filters).some((v) => v !== '');

  return (
    <>
      <h1>Audit log</h1>
      <p className="lede">Every change made through the desk, the CLI and the jobs, newest first. The database refuses to edit or delete these rows.</p>

      <section aria-labelledby="audit-filters-heading" className="panel">
        <h2 id="audit-filters-heading" className="visually-hidden">
          Filters
        </h2>
        <FilterBar filtered={filtered} clearTo="/audit" formKey={JSON.stringify(filters)}>
          <FilterSelect id="audit-action" name="action" label="Action" value={filters.action} anyLabel="Any action" options={options.actions.map((a) => ({ value: a, label: auditActionWords(a) }))} />
          <div className="field">
            <label htmlFor="audit-actor">Actor</label>
            <input id="audit-actor" name="actor" type="text" list="audit-actors" defaultValue={filters.actor} placeholder="email, or cli / job:… / scheduler" />
            <datalist id="audit-actors">
              {options.actors.map((a) => (
                <option key={a} value={a} />
              ))}
            </datalist>
          </div>
          <FilterSelect id="audit-subject-type" name="subjectType" label="Subject type" value={filters.subjectType} anyLabel="Any subject" options={options.subjectTypes.map((t) => ({ value: t, label: t }))} />
          <FilterInput id="audit-subject-id" name="subjectId" label="Subject id" value={filters.subjectId} />
          <FilterInput id="audit-from" name="from" label="From (UTC)" type="datetime-local" value={filters.from} />
          <FilterInput id="audit-to" name="to" label="Before (UTC)" type="datetime-local" value={filters.to} />
        </FilterBar>
      </section>

      <section aria-labelledby="audit-entries-heading" aria-busy={loading}>
        <h2 id="audit-entries-heading" className="visually-hidden">
          Entries
        </h2>
        <DeskTable
          label="Audit entries"
          className="audit-table"
          rows={page.entries}
          rowKey={(e) => e.id}
          empty={filtered ? 'No entries match these filters.' : 'Nothing has been audited yet.'}
          columns={[
            { header: 'When', className: 'nowrap', cell: (e) => formatTimestamp(e.at) },
            {
              header: 'Who',
              cell: (e) => (
                <span>
                  {e.actorLabel}
                  {e.actorRole ? <span className={`badge badge-role-${e.actorRole}`}>{e.actorRole}</span> : null}
                </span>
              ),
            },
            {
              header: 'What',
              cell: (e) => (
                <span title={e.action}>
                  {auditActionWords(e.action)}
                  <code className="block muted">{e.action}</code>
                </span>
              ),
            },
            { header: 'On', cell: (e) => <AuditSubject type={e.subjectType} id={e.subjectId} /> },
            { header: 'Why', cell: (e) => e.reason ?? <Missing /> },
            { header: 'Change', cell: (e) => <AuditChange before={e.before} after={e.after} /> },
          ]}
        />
        <KeysetPager label="Audit log pages" path="/audit" filters={filters} newer={page.newer} older={page.older} />
      </section>
    </>
  );
}

function AuditSubject({ type, id }: { type: string; id: string | null }) {
  const href = auditSubjectHref(type, id);
  const name = (
    <>
      {type.replaceAll('_', ' ')}
      {id ? <code className="block subject-id">{id}</code> : null}
    </>
  );
  return href ? <Link to={href}>{name}</Link> : <span>{name}</span>;
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
