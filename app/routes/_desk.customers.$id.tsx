import { Form, Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.customers.$id';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ForceFields } from '../components/retry-fields';
import { CustomerDetailPresenter } from '../billing/ledger/customer-list';
import { parseEventFilters } from '../billing/ledger/event-list';
import { getServices } from '../server/desk-context';
import { formatTimestamp, invariantResponse } from '../utils/misc';
import { requireUserWithPermission, userHasPermission } from '../utils/permissions.server';
import { handleRetryAction, type RetryActionError } from './_desk.events.server';
import { StateBadge } from '../components/state-badge';

export const meta: Route.MetaFunction = ({ loaderData }) => [{ title: `Customer ${loaderData?.customer.externalId ?? ''} · Meterdesk` }];

export async function loader({ request, params, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:meter-event:any');
  const customer = await CustomerDetailPresenter.call(getServices(context).pool, params.id);
  invariantResponse(customer, 'No such customer', { status: 404 });
  return {
    customer,
    canRetryOwn: userHasPermission(user, 'retry:meter-event:own'),
    canRetryAny: userHasPermission(user, 'retry:meter-event:any'),
  };
}

export async function action({ request, params, context }: Route.ActionArgs) {
  const user = await requireUserWithPermission(request, context, 'retry:meter-event:own');
  const formData = await request.formData();
  // This page retries only its own customer's failed events, whatever the form says.
  formData.set('intent', 'retry-customer');
  formData.set('customerId', params.id);
  return handleRetryAction({
    request,
    context,
    user,
    formData,
    filters: parseEventFilters(new URLSearchParams()),
    redirectTo: `/customers/${params.id}`,
  });
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
        <div className="table-scroll" role="region" aria-label="Customer details" tabIndex={0}>
          <table className="data-table">
            <tbody>
              <tr>
                <th scope="row">Name</th>
                <td>{customer.name ?? '—'}</td>
              </tr>
              <tr>
                <th scope="row">Email</th>
                <td>{customer.email ?? '—'}</td>
              </tr>
              <tr>
                <th scope="row">Processor</th>
                <td>
                  {customer.processor} <code>{customer.processorCustomerId}</code>
                </td>
              </tr>
              {customer.processor === 'braintree' ? (
                <tr>
                  <th scope="row">Payment method</th>
                  <td>{customer.defaultPaymentMethodToken ? 'on file' : 'awaiting a payment method'}</td>
                </tr>
              ) : null}
              <tr>
                <th scope="row">Created</th>
                <td>{formatTimestamp(customer.createdAt)}</td>
              </tr>
            </tbody>
          </table>
        </div>
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
            {canRetryOwn ? (
              <Form method="post" className="stack">
                <input type="hidden" name="intent" value="retry-customer" />
                {canRetryAny ? <ForceFields idPrefix="retry-customer" /> : null}
                <button type="submit" className="button button-primary" disabled={retrying}>
                  {retrying ? 'Retrying…' : "Retry this customer's failed events"}
                </button>
              </Form>
            ) : null}
          </>
        )}
        {error ? (
          <div className="form-errors" role="alert">
            {error.message}
          </div>
        ) : null}
      </section>

      <section aria-labelledby="subscriptions-heading" className="panel">
        <h2 id="subscriptions-heading">Subscriptions</h2>
        {customer.subscriptions.length === 0 ? (
          <p className="empty">No subscriptions.</p>
        ) : (
          <div className="table-scroll" role="region" aria-label="Subscriptions list" tabIndex={0}>
            <table className="data-table card-table">
              <thead>
                <tr>
                  <th scope="col">Subscription</th>
                  <th scope="col">Plan</th>
                  <th scope="col">Status</th>
                  <th scope="col">Current period</th>
                </tr>
              </thead>
              <tbody>
                {customer.subscriptions.map((s) => (
                  <tr key={s.id}>
                    <td data-label="Subscription">
                      <code>{s.processorSubscriptionId}</code>
                    </td>
                    <td data-label="Plan">{s.plan}</td>
                    <td data-label="Status">
                      <StateBadge kind="subscription" state={s.status} />
                    </td>
                    <td data-label="Current period">
                      {formatTimestamp(s.currentPeriodStart)} – {formatTimestamp(s.currentPeriodEnd)}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section aria-labelledby="recent-heading" className="panel">
        <h2 id="recent-heading">Recent usage</h2>
        {customer.events.length === 0 ? (
          <p className="empty">No usage recorded.</p>
        ) : (
          <div className="table-scroll" role="region" aria-label="Recent events" tabIndex={0}>
            <table className="data-table card-table">
              <thead>
                <tr>
                  <th scope="col">Event</th>
                  <th scope="col">Status</th>
                  <th scope="col">Event name</th>
                  <th scope="col" className="numeric">
                    Value
                  </th>
                  <th scope="col">Occurred</th>
                  <th scope="col">Last error</th>
                </tr>
              </thead>
              <tbody>
                {customer.events.map((e) => (
                  <tr key={e.id}>
                    <td data-label="Event">
                      <Link to={`/events/${e.id}`}>
                        <code>{e.identifier}</code>
                      </Link>
                    </td>
                    <td data-label="Status">
                      <StateBadge kind="event" state={e.status} />
                    </td>
                    <td data-label="Event name">
                      <code>{e.eventName}</code>
                    </td>
                    <td data-label="Value" className="numeric">
                      {e.value}
                    </td>
                    <td data-label="Occurred" className="nowrap">
                      {formatTimestamp(e.occurredAt)}
                    </td>
                    <td data-label="Last error">{e.lastErrorCode ? <code>{e.lastErrorCode}</code> : <span className="muted">—</span>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
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
