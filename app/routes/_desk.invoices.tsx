import { Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.invoices';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { UpcomingChargesTable } from '../components/upcoming-charges';
import { getServices } from '../server/desk-context';
import { formatMoney } from '../utils/money';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { listInvoices, listUpcomingCharges, parseInvoiceFilters } from '../presenters/invoices';
import { StateBadge } from '../components/state-badge';

export const meta: Route.MetaFunction = () => [{ title: 'Invoices · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'read:invoice:any');
  const { pool } = getServices(context);
  const filters = parseInvoiceFilters(new URL(request.url));
  // The preview only on the first page: paging through history should not recompute it each time.
  const [page, upcoming] = await Promise.all([listInvoices(pool, filters), filters.cursor ? Promise.resolve(null) : listUpcomingCharges(pool)]);
  return { page, upcoming };
}

export default function InvoicesPage({ loaderData }: Route.ComponentProps) {
  const { page, upcoming } = loaderData;
  const navigation = useNavigation();
  const loading = navigation.state === 'loading' && navigation.location.pathname === '/invoices';
  const pageLink = (cursor: string, direction: 'older' | 'newer') => `/invoices?${new URLSearchParams({ cursor, direction })}`;
  return (
    <>
      <h1>Invoices</h1>
      <p className="lede">Invoices authored for Braintree windows, newest first, with what each window's payment came to.</p>
      <p>
        {/* A plain link (reloadDocument): the export is a file download, not a page. */}
        <Link to="/invoices/export" reloadDocument className="button button-secondary" download>
          Export all invoices (CSV)
        </Link>
      </p>

      <section aria-labelledby="invoices-heading" aria-busy={loading}>
        <h2 id="invoices-heading">Authored invoices</h2>
        {page.invoices.length === 0 ? (
          <p className="empty">No invoices yet.</p>
        ) : (
          <div className="table-scroll" role="region" aria-label="Invoices" tabIndex={0}>
            <table className="data-table card-table">
              <thead>
                <tr>
                  <th scope="col">Customer</th>
                  <th scope="col">Period</th>
                  <th scope="col">Total</th>
                  <th scope="col">Payment state</th>
                  <th scope="col">Authored</th>
                  <th scope="col">Invoice</th>
                </tr>
              </thead>
              <tbody>
                {page.invoices.map((i) => (
                  <tr key={i.id}>
                    <th scope="row">{i.customerLabel}</th>
                    <td data-label="Period">
                      {formatTimestamp(i.periodStart)} → {formatTimestamp(i.periodEnd)}
                    </td>
                    <td data-label="Total" className="numeric">{formatMoney(i.totalMinor, i.currency)}</td>
                    <td data-label="Payment">
                      <StateBadge kind="window" state={i.paymentState} />
                      {i.chargeStatus ? (
                        <span className="muted block">
                          charge <StateBadge kind="charge" state={i.chargeStatus} />
                        </span>
                      ) : null}
                    </td>
                    <td data-label="Authored" className="nowrap">
                      {formatTimestamp(i.authoredAt)}
                      {i.revision > 1 ? <span className="muted block">revision {i.revision}</span> : null}
                    </td>
                    <td data-label="Invoice">
                      <Link to={`/invoices/${i.id}`}>
                        View<span className="visually-hidden"> the invoice of {i.customerLabel} for the period ending {formatTimestamp(i.periodEnd)}</span>
                      </Link>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <nav aria-label="Invoice pages" className="pagination">
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

      {upcoming ? (
        <section aria-labelledby="upcoming-heading" className="panel">
          <h2 id="upcoming-heading">Upcoming charges</h2>
          <p className="field-help">What each live subscription's current window would be charged if it closed now, at its frozen prices.</p>
          <UpcomingChargesTable items={upcoming} />
        </section>
      ) : null}
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
