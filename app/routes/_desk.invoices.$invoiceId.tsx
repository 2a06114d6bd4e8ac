import { Link } from 'react-router';
import type { Route } from './+types/_desk.invoices.$invoiceId';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { InvoiceLinesTable } from '../components/invoice-lines';
import { UpcomingChargesTable } from '../components/upcoming-charges';
import { getServices } from '../server/desk-context';
import { formatMoney } from '../utils/money';
import { formatTimestamp, invariantResponse } from '../utils/misc';
import { requireUserWithPermission, userHasPermission } from '../utils/permissions.server';
import { listUpcomingCharges, loadInvoice } from '../presenters/invoices';
import { StateBadge } from '../components/state-badge';

export const meta: Route.MetaFunction = () => [{ title: 'Invoice · Meterdesk' }];

export async function loader({ request, params, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:invoice:any');
  const { pool } = getServices(context);
  const invoice = await loadInvoice(pool, params.invoiceId);
  invariantResponse(invoice, 'No invoice with this id.', { status: 404 });
  const upcoming = await listUpcomingCharges(pool, { subscriptionId: invoice.subscriptionId });
  return { invoice, upcoming, canWriteOff: userHasPermission(user, 'write-off:charge:any') };
}

export default function InvoicePage({ loaderData }: Route.ComponentProps) {
  const { invoice: i, upcoming, canWriteOff } = loaderData;
  return (
    <>
      <p>
        <Link to="/invoices">← Invoices</Link>
      </p>
      <h1>
        Invoice for {i.customerLabel}
        <span className="muted block">
          {formatTimestamp(i.periodStart)} → {formatTimestamp(i.periodEnd)}
        </span>
      </h1>
      <section aria-labelledby="invoice-summary-heading" className="panel">
        <h2 id="invoice-summary-heading">Summary</h2>
        <dl className="stack">
          <dt>Total</dt>
          <dd>
            <strong>{formatMoney(i.totalMinor, i.currency)}</strong>
          </dd>
          <dt>Payment state</dt>
          <dd>
            <StateBadge kind="window" state={i.paymentState} />
            {i.chargeStatus ? (
              <span className="muted">
                {' '}
                charge <StateBadge kind="charge" state={i.chargeStatus} />
              </span>
            ) : null}
          </dd>
          <dt>Transaction id</dt>
          <dd>{i.transactionId ? <code>{i.transactionId}</code> : '—'}</dd>
          <dt>Revision</dt>
          <dd>
            {i.revision}, authored {formatTimestamp(i.authoredAt)}
          </dd>
          <dt>Customer</dt>
          <dd>
            <code>{i.customerExternalId}</code>
          </dd>
        </dl>
        <p>
          <Link to={`/windows/${i.windowId}`}>Open its window</Link>
          {canWriteOff && i.paymentState === 'failed_exhausted' ? (
            <>
              {' · '}
              <Link to={`/windows/${i.windowId}/write-off`}>Write off this charge</Link>
            </>
          ) : null}
        </p>
      </section>
      <section aria-labelledby="lines-heading" className="panel">
        <h2 id="lines-heading">Decomposition</h2>
        <InvoiceLinesTable lines={i.lines} currency={i.currency} totalMinor={i.totalMinor} label="Invoice lines" />
      </section>
      <section aria-labelledby="upcoming-heading" className="panel">
        <h2 id="upcoming-heading">Upcoming charges for this subscription</h2>
        <UpcomingChargesTable items={upcoming} />
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
