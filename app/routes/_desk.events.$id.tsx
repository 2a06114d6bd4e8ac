import { Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.events.$id';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { RetryError, RetrySubjectForm } from '../components/retry-fields';
import { causeOf, FAILURE_CAUSES } from '../billing/ledger/failure-causes';
import { EventDetailPresenter } from '../billing/ledger/event-list';
import { getServices } from '../server/desk-context';
import { formatTimestamp, invariantResponse } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { retryOwnSubject, retryPermissionsOf, type RetryActionError } from './_desk.events.server';
import { StateBadge } from '../components/state-badge';
import { DeskTable, FieldTable, type Fields } from '../components/desk-table';

export const meta: Route.MetaFunction = ({ loaderData }) => [{ title: `Event ${loaderData?.event.identifier ?? ''} · Meterdesk` }];

export async function loader({ request, params, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:meter-event:any');
  const event = await EventDetailPresenter.call(getServices(context).pool, params.id);
  invariantResponse(event, 'No such event', { status: 404 });
  return { event, ...retryPermissionsOf(user) };
}

// This page retries only its own event.
export async function action({ request, params, context }: Route.ActionArgs) {
  return retryOwnSubject(request, context, { intent: 'retry-one', id: params.id }, `/events/${params.id}`);
}

const pretty = (value: unknown) => JSON.stringify(value, null, 2);

export default function EventPage({ loaderData, actionData }: Route.ComponentProps) {
  const { event, canRetryOwn, canRetryAny } = loaderData;
  const error = actionData as RetryActionError | undefined;
  const navigation = useNavigation();
  const retrying = navigation.state === 'submitting';
  const fields: Fields = [
    ['Event id', <code key="id">{event.id}</code>],
    ['Identifier', <code key="identifier">{event.identifier}</code>],
    event.sentIdentifier
      ? ['Sent to Stripe as', <span key="sent"><code>{event.sentIdentifier}</code> (Stripe rejected the identifier after accepting it; a retry sends a new one)</span>]
      : null,
    ['Status', <StateBadge key="status" kind="event" state={event.status} />],
    ['Customer', <Link key="customer" to={`/customers/${event.customerId}`}>{event.customerExternalId}{event.customerName ? ` (${event.customerName})` : ''}</Link>],
    ['Subscription', event.processorSubscriptionId ? <code key="sub">{event.processorSubscriptionId}</code> : null],
    ['Event name', <code key="name">{event.eventName}</code>],
    ['Meter', event.meterId ? <code key="meter">{event.meterId}</code> : <Link to={`/definitions?eventName=${encodeURIComponent(event.eventName)}#add-heading`}>missing definition</Link>],
    ['Value', event.value],
    ['Occurred', formatTimestamp(event.occurredAt)],
    ['Received', formatTimestamp(event.receivedAt)],
    ['Processor', event.processor],
    ['Attempts', String(event.attempts)],
    ['First attempt', formatTimestamp(event.firstAttemptAt)],
    ['Reported', formatTimestamp(event.reportedAt)],
    ['Trace id', event.traceId ? <code key="trace">{event.traceId}</code> : null],
    ['Window', event.windowId ? <Link to={`/windows/${event.windowId}`}><code>{event.windowId}</code></Link> : null],
    ['Invoice line', event.invoiceLineId ? <code key="line">{event.invoiceLineId}</code> : null],
    event.late && ['Late', 'occurred inside an already invoiced window; billed in the next one'],
  ];

  return (
    <>
      <p>
        <Link to="/events">← Events</Link>
      </p>
      <h1>
        Event <code>{event.identifier}</code>
      </h1>

      {event.status === 'failed' || event.attentionReason ? (
        <section aria-labelledby="why-heading" className="panel" data-testid="event-problem">
          <h2 id="why-heading">{event.status === 'failed' ? 'Why it failed' : 'Needs attention'}</h2>
          {event.lastErrorCode ? (
            <p>
              <code>{event.lastErrorCode}</code>
              {event.lastErrorSource ? <span className="muted"> (from {event.lastErrorSource})</span> : null}: {event.lastErrorMessage ?? 'no message'}
            </p>
          ) : null}
          {event.status === 'failed' ? (
            <p data-testid="failure-cause">
              <strong>{FAILURE_CAUSES[causeOf(event.lastErrorCode, event.lastErrorMessage)].label}.</strong> {FAILURE_CAUSES[causeOf(event.lastErrorCode, event.lastErrorMessage)].fix}
            </p>
          ) : null}
          {event.attentionReason ? <p>Attention: {event.attentionReason}</p> : null}
          {event.status === 'failed' && event.processor === 'stripe' && canRetryOwn ? (
            <RetrySubjectForm intent="retry-one" canForce={canRetryAny} retrying={retrying} label="Retry this event" />
          ) : null}
          <RetryError error={error} />
        </section>
      ) : null}

      <section aria-labelledby="fields-heading" className="panel">
        <h2 id="fields-heading">Fields</h2>
        <FieldTable label="Event fields" fields={fields} />
        {event.properties ? (
          <>
            <h3>Properties</h3>
            <pre tabIndex={0} aria-label="Event properties">{pretty(event.properties)}</pre>
          </>
        ) : null}
      </section>

      {event.ignoredDuplicates.length > 0 ? (
        <section aria-labelledby="duplicates-heading" className="panel">
          <h2 id="duplicates-heading">Duplicates ignored</h2>
          <p className="field-help">
            The identifier came again with other facts. The event stays as first stored, as Stripe keeps the first of an identifier; what
            was sent again is listed here.
          </p>
          <DeskTable
            label="Duplicates ignored"
            rows={event.ignoredDuplicates}
            rowKey={(_, i) => String(i)}
            columns={[
              { header: 'Received', cell: (d) => formatTimestamp(d.receivedAt) },
              { header: 'What differed', cell: (d) => `duplicate ignored (${d.differs.map((x) => x.replace('_', ' ')).join(', ')} differed)` },
              { header: 'Value sent', numeric: true, cell: (d) => d.value },
              { header: 'Event name sent', cell: (d) => <code>{d.eventName}</code> },
              { header: 'Customer sent', cell: (d) => d.customerExternalId },
            ]}
          />
        </section>
      ) : null}

      <section aria-labelledby="attempts-heading" className="panel">
        <h2 id="attempts-heading">Attempts</h2>
        {event.attemptLog.length === 0 ? (
          <p className="empty">No processor calls yet.</p>
        ) : (
          <ol className="stack attempt-timeline">
            {event.attemptLog.map((a, i) => (
              <li key={a.id}>
                <h3>
                  Attempt {i + 1}: {a.outcome}
                  {a.httpStatus ? ` (HTTP ${a.httpStatus})` : ''}
                </h3>
                <p>
                  {formatTimestamp(a.startedAt)}
                  {a.durationMs !== null ? `, ${a.durationMs} ms` : ''}, via {a.source}
                  {a.traceId ? (
                    <>
                      , trace <code>{a.traceId}</code>
                    </>
                  ) : null}
                </p>
                {a.errorCode ? (
                  <p>
                    <code>{a.errorCode}</code>: {a.errorMessage ?? ''}
                  </p>
                ) : null}
                {a.response !== null && a.response !== undefined ? (
                  <pre tabIndex={0} aria-label={`Processor response, attempt ${i + 1}`}>
                    {pretty(a.response)}
                  </pre>
                ) : null}
              </li>
            ))}
          </ol>
        )}
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
