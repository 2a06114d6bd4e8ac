import { Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.customers.$id';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { RetryError, RetrySubjectForm } from '../components/retry-fields';
import { CustomerDetailPresenter } from '../billing/ledger/customer-list';
import { getServices } from '../server/desk-context';
import { formatTimestamp, invariantResponse } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { retryOwnSubject, retryPermissionsOf, type RetryActionError } from './_desk.events.server';
import { StateBadge } from '../components/state-badge';
import { DeskTable, FieldTable, Missing } from '../components/desk-table';

export const meta: Route.MetaFunction = ({ loaderData }) => [{ title: `Customer ${loaderData?.customer.externalId ?? ''} · Meterdesk` }];

export async function loader({ request, params, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:meter-event:any');
  const customer = await CustomerDetailPresenter.call(getServices(context).pool, params.id);
  invariantResponse(customer, 'No such customer', { status: 404 });
  return { customer, ...retryPermissionsOf(user) };
}

// This page retries only its own customer's failed events.
export async function action({ request, params, context }: Route.ActionArgs) {
  return retryOwnSubject(request, context, { intent: 'retry-customer', customerId: params.id }, `/customers/${params.id}`);
}

export default function CustomerPage({ loaderData, actionData }: Route.ComponentProps) {
  const { customer, canRetryOwn, canRetryAny } = loaderData;
  const error = actionData as RetryActionError | undefined;
  const retrying = useNavigation().state === 'submitting';
  const failedLabel = `${customer.failed.toLocaleString('en-US')}${customer.failedCapped ? '+' : ''}`;
  return (
    <>
      <p>
        <Link to="/customers">← Customers</Link>
      </p>
      <h1>
        Customer <code>{customer.externalId}</code>
      </h1>
      <section aria-labelledby="customer-heading" className="panel">
        <h2 id="customer-heading">Details</h2>
        <FieldTable
          label="Customer details"
          fields={[
            ['Name', customer.name],
            ['Email', customer.email],
            [
              'Processor',
              <>
                {customer.processor} <code>{customer.processorCustomerId}</code>
              </>,
            ],
            customer.processor === 'braintree' && ['Payment method', customer.defaultPaymentMethodToken ? 'on file' : 'awaiting a payment method'],
            ['Created', formatTimestamp(customer.createdAt)],
          ]}
        />
      </section>

      <section aria-labelledby="failed-heading" className="panel">
        <h2 id="failed-heading">Failed events</h2>
        {customer.failed === 0 ? (
          <p>No failed events.</p>
        ) : (
          <>
            <p>
              <Link to={`/events?${new URLSearchParams({ customer: customer.externalId, status: 'failed' })}`}>
                {failedLabel} failed event{customer.failed === 1 ? '' : 's'}
              </Link>
            </p>
            {canRetryOwn ? <RetrySubjectForm intent="retry-customer" canForce={canRetryAny} retrying={retrying} label="Retry this customer's failed events" /> : null}
          </>
        )}
        <RetryError error={error} />
      </section>

      <section aria-labelledby="subscriptions-heading" className="panel">
        <h2 id="subscriptions-heading">Subscriptions</h2>
        <DeskTable
          label="Subscriptions list"
          cards
          rows={customer.subscriptions}
          rowKey={(sub) => sub.id}
          empty="No subscriptions."
          columns={[
            { header: 'Subscription', cell: (sub) => <code>{sub.processorSubscriptionId}</code> },
            { header: 'Plan', cell: (sub) => sub.plan },
            { header: 'Status', cell: (sub) => <StateBadge kind="subscription" state={sub.status} /> },
            { header: 'Current period', cell: (sub) => `${formatTimestamp(sub.currentPeriodStart)} – ${formatTimestamp(sub.currentPeriodEnd)}` },
          ]}
        />
      </section>

      <section aria-labelledby="recent-heading" className="panel">
        <h2 id="recent-heading">Recent usage</h2>
        <DeskTable
          label="Recent events"
          cards
          rows={customer.events}
          rowKey={(e) => e.id}
          empty="No usage recorded."
          columns={[
            {
              header: 'Event',
              cell: (e) => (
                <Link to={`/events/${e.id}`}>
                  <code>{e.identifier}</code>
                </Link>
              ),
            },
            { header: 'Status', cell: (e) => <StateBadge kind="event" state={e.status} /> },
            { header: 'Event name', cell: (e) => <code>{e.eventName}</code> },
            { header: 'Value', numeric: true, cell: (e) => e.value },
            { header: 'Occurred', className: 'nowrap', cell: (e) => formatTimestamp(e.occurredAt) },
            { header: 'Last error', cell: (e) => (e.lastErrorCode ? <code>{e.lastErrorCode}</code> : <Missing />) },
          ]}
        />
        <p>
          <Link to={`/events?${new URLSearchParams({ customer: customer.externalId })}`}>All of this customer's events</Link>
        </p>
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
