import { Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.invoices';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { UpcomingChargesTable } from '../components/upcoming-charges';
import { getServices } from '../server/desk-context';
import { formatMoney } from '../utils/money';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { invoiceFilterValues, invoiceTotals, isFiltered, listInvoices, listUpcomingCharges, parseInvoiceFilters, type InvoiceListItem } from '../presenters/invoices';
import { StateBadge } from '../components/state-badge';
import { stateOptions } from '../billing/states';
import { DeskTable, FilterBar, FilterInput, FilterSelect, KeysetPager } from '../components/desk-table';

export const meta: Route.MetaFunction = () => [{ title: 'Invoices · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'read:invoice:any');
  const { pool } = getServices(context);
  const filters = parseInvoiceFilters(new URL(request.url));
  // The upcoming charges only on the unfiltered first page: paging or filtering history should not recompute them.
  const showUpcoming = !filters.cursor && !isFiltered(filters);
  const [page, totals, upcoming] = await Promise.all([
    listInvoices(pool, filters),
    invoiceTotals(pool, filters),
    showUpcoming ? listUpcomingCharges(pool) : Promise.resolve(null),
  ]);
  return { page, totals, upcoming, filters: invoiceFilterValues(filters), filtered: isFiltered(filters) };
}

const PROCESSORS = [
  { value: 'braintree', label: 'Braintree' },
  { value: 'stripe', label: 'Stripe' },
];

function emptyText(page: { unknownCustomer: boolean }, filters: Record<string, string>, filtered: boolean): string {
  if (page.unknownCustomer) return `No customer "${filters.customer}": search by the customer's id in your app or its processor customer id.`;
  if (filters.processor === 'stripe') return 'Stripe authors the invoices of Stripe customers from the usage Meterdesk reports; find them in the Stripe dashboard. Meterdesk authors invoices for Braintree windows.';
  return filtered ? 'No invoices match these filters.' : 'No invoices yet.';
}

export default function InvoicesPage({ loaderData }: Route.ComponentProps) {
  const { page, totals, upcoming, filters, filtered } = loaderData;
  const navigation = useNavigation();
  const loading = navigation.state === 'loading' && navigation.location.pathname === '/invoices';
  const exportHref = (view: 'invoices' | 'lines') => `/invoices/export?${new URLSearchParams({ ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== '')), view })}`;
  return (
    <>
      <h1>Invoices</h1>
      <p className="lede">Invoices authored for Braintree windows, newest first, with what each window's payment came to.</p>

      <FilterBar filtered={filtered} clearTo="/invoices" label="Filter invoices" formKey={JSON.stringify(filters)}>
        <FilterSelect id="state" name="state" label="Payment state" value={filters.state} anyLabel="Any state" options={stateOptions('window').filter((o) => o.value !== 'open')} />
        <FilterInput id="customer" name="customer" label="Customer id" value={filters.customer} placeholder="acme or a processor customer id" />
        <FilterSelect id="processor" name="processor" label="Processor" value={filters.processor} anyLabel="Any processor" options={PROCESSORS} />
        <FilterInput id="periodFrom" name="periodFrom" label="Period ending on or after" type="date" value={filters.periodFrom} />
        <FilterInput id="periodTo" name="periodTo" label="Period ending on or before" type="date" value={filters.periodTo} />
      </FilterBar>

      <section aria-labelledby="totals-heading" className="panel">
        <h2 id="totals-heading">{filtered ? 'Totals of the invoices matching these filters' : 'Totals of all invoices'}</h2>
        <DeskTable
          label="Invoice totals per currency"
          rows={totals}
          rowKey={(t) => t.currency}
          empty="No invoices, so nothing to total."
          columns={[
            { header: 'Currency', rowHeader: true, cell: (t) => t.currency.toUpperCase() },
            { header: 'Invoices', numeric: true, cell: (t) => <span data-total="invoices">{t.invoices.toLocaleString('en-US')}</span> },
            { header: 'Invoiced', numeric: true, cell: (t) => <span data-total="total">{formatMoney(t.totalMinor, t.currency)}</span> },
            { header: 'Paid', numeric: true, cell: (t) => <span data-total="paid">{formatMoney(t.paidMinor, t.currency)}</span> },
            { header: 'Outstanding', numeric: true, cell: (t) => <span data-total="outstanding">{formatMoney(t.outstandingMinor, t.currency)}</span> },
            { header: 'Written off', numeric: true, cell: (t) => <span data-total="written-off">{formatMoney(t.writtenOffMinor, t.currency)}</span> },
          ]}
        />
        <p className="field-help">Outstanding is what is invoiced but neither paid nor written off: closed, settling, retrying, exhausted or waiting for a payment method.</p>
        <p className="form-actions">
          {/* Plain links (reloadDocument): an export is a file download, not a page. */}
          <Link to={exportHref('invoices')} reloadDocument className="button button-secondary" download>
            {filtered ? 'Export these invoices (CSV)' : 'Export all invoices (CSV)'}
          </Link>
          <Link to={exportHref('lines')} reloadDocument className="button button-secondary" download>
            Export their lines (CSV)
          </Link>
        </p>
      </section>

      <section aria-labelledby="invoices-heading" aria-busy={loading}>
        <h2 id="invoices-heading">Authored invoices</h2>
        <DeskTable<InvoiceListItem>
          label="Invoices"
          cards
          rows={page.invoices}
          rowKey={(i) => i.id}
          empty={emptyText(page, filters, filtered)}
          columns={[
            { header: 'Customer', rowHeader: true, cell: (i) => i.customerLabel },
            { header: 'Period', cell: (i) => `${formatTimestamp(i.periodStart)} → ${formatTimestamp(i.periodEnd)}` },
            { header: 'Total', numeric: true, cell: (i) => formatMoney(i.totalMinor, i.currency) },
            {
              header: 'Payment state',
              cell: (i) => (
                <>
                  <StateBadge kind="window" state={i.paymentState} />
                  {i.chargeStatus ? (
                    <span className="muted block">
                      charge <StateBadge kind="charge" state={i.chargeStatus} />
                    </span>
                  ) : null}
                </>
              ),
            },
            {
              header: 'Authored',
              className: 'nowrap',
              cell: (i) => (
                <>
                  {formatTimestamp(i.authoredAt)}
                  {i.revision > 1 ? <span className="muted block">revision {i.revision}</span> : null}
                </>
              ),
            },
            {
              header: 'Invoice',
              cell: (i) => (
                <Link to={`/invoices/${i.id}`}>
                  View<span className="visually-hidden"> the invoice of {i.customerLabel} for the period ending {formatTimestamp(i.periodEnd)}</span>
                </Link>
              ),
            },
          ]}
        />
        <KeysetPager label="Invoice pages" path="/invoices" filters={filters} newer={page.newer} older={page.older} />
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
