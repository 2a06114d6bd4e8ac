import { useEffect } from 'react';
import { Form, Link, useNavigation, useRevalidator } from 'react-router';
import type { Route } from './+types/_desk.events';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { AnywayField, ForceFields, RetryError } from '../components/retry-fields';
import { DeskTable, FilterBar, FilterInput, FilterSelect, KeysetPager, Missing } from '../components/desk-table';
import { SubmissionKey } from '../components/submission-key';
import { causeOf, FAILURE_CAUSE_ORDER, FAILURE_CAUSES, type FailureCause } from '../billing/ledger/failure-causes';
import { EVENT_STATUSES, EventListPresenter, FailureSummaryPresenter, filterValues, parseEventFilters, PROCESSORS } from '../billing/ledger/event-list';
import { getDesk, getServices } from '../server/desk-context';
import { formatTimestamp } from '../utils/misc';
import { retryProgress, type RetryProgress } from '../billing/ledger/retry';
import { requireUserWithPermission } from '../utils/permissions.server';
import { handleRetryAction, previewFilterRetry, retryAllBlocker, retryPermissionsOf, type RetryActionError } from './_desk.events.server';
import { StateBadge } from '../components/state-badge';
import { stateWords } from '../billing/states';
import { DeskCount } from '../components/desk-count';
import { readDeskCountFor } from '../billing/overview';
import { onceForSubmission } from '../utils/submissions.server';

export const meta: Route.MetaFunction = () => [{ title: 'Events · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:meter-event:any');
  const url = new URL(request.url);
  const filters = parseEventFilters(url.searchParams);
  const { pool } = getServices(context);
  const confirming = url.searchParams.get('confirm') === 'retry-all' && !retryAllBlocker(filters);
  const retryId = url.searchParams.get('retry');
  const [page, failures, preview, progress, deskCount] = await Promise.all([
    EventListPresenter.call(pool, filters),
    filters.status === undefined || filters.status === 'failed' ? FailureSummaryPresenter.call(pool, filters) : null,
    confirming ? previewFilterRetry(pool, filters, getDesk(context).customerCheck) : null,
    retryId ? retryProgress(pool, retryId) : null,
    readDeskCountFor(pool, url),
  ]);
  return {
    page,
    deskCount,
    failures,
    preview,
    progress,
    filters: filterValues(filters),
    retryAllBlocker: retryAllBlocker(filters),
    ...retryPermissionsOf(user),
  };
}

// A double click or a resent form runs this once (app/utils/submissions.server.ts).
export async function action(args: Route.ActionArgs) {
  return onceForSubmission(args.request, args.context, () => act(args));
}

async function act({ request, context }: Route.ActionArgs) {
  const user = await requireUserWithPermission(request, context, 'retry:meter-event:own');
  const url = new URL(request.url);
  const filters = parseEventFilters(url.searchParams);
  const back = new URLSearchParams(Object.entries(filterValues(filters)).filter(([, v]) => v !== ''));
  return handleRetryAction({
    request,
    context,
    user,
    formData: await request.formData(),
    filters,
    // Back to the same filters, with the retry's progress panel when something moved.
    redirectTo: (auditId) => {
      const params = new URLSearchParams(back);
      if (auditId) params.set('retry', auditId);
      return `/events${params.size ? `?${params}` : ''}`;
    },
  });
}

const STATUS_OPTIONS = EVENT_STATUSES;

export default function EventsPage({ loaderData, actionData }: Route.ComponentProps) {
  const { page, failures, preview, progress, filters, canRetryAny, canRetryOwn } = loaderData;
  const error = actionData as RetryActionError | undefined;
  const navigation = useNavigation();
  const loading = navigation.state === 'loading' && navigation.location.pathname === '/events';
  const submitting = navigation.state === 'submitting' ? String(navigation.formData?.get('intent') ?? '') : null;
  const filterParams = new URLSearchParams(Object.entries(filters).filter(([, v]) => v !== ''));
  const query = (extra: Record<string, string>) => {
    const params = new URLSearchParams(filterParams);
    for (const [k, v] of Object.entries(extra)) params.set(k, v);
    return `/events?${params}`;
  };
  const filtered = filterParams.size > 0;
  const selfAction = `/events${filterParams.size ? `?${filterParams}` : ''}`;
  // Support may retry by filter only when the filter names one customer.
  const canRetryFilter = canRetryAny || (canRetryOwn && filters.customer !== '');
  // ...and select only within one customer: without a customer filter the list offers no selection to support, so no
  // button leads to a refusal.
  const canSelect = canRetryAny || (canRetryOwn && filters.customer !== '' && !page.unknownCustomer);
  const selectable = canSelect ? page.events.filter((e) => e.status === 'failed' && e.processor === 'stripe') : [];

  return (
    <>
      <h1>Events</h1>
      <p className="lede">The usage ledger, newest first. Filter to what went wrong, see why, and send failed events to the processor again.</p>
      <DeskCount line={loaderData.deskCount} />
      {progress ? <RetryProgressPanel progress={progress} refreshTo={query({ retry: progress.auditId })} /> : null}

      <section aria-labelledby="events-filters-heading" className="panel">
        <h2 id="events-filters-heading" className="visually-hidden">
          Filters
        </h2>
        <FilterBar filtered={filtered} clearTo="/events" formKey={filterParams.toString()}>
          <FilterInput id="events-q" name="q" type="search" label="Event id or identifier" value={filters.q} />
          <FilterSelect id="events-status" name="status" label="Status" value={filters.status} anyLabel="Any status" options={STATUS_OPTIONS.map((s) => ({ value: s, label: stateWords('event', s).label }))} />
          <FilterInput id="events-customer" name="customer" label="Customer (external id)" value={filters.customer} />
          <FilterInput id="events-event-name" name="eventName" label="Event name" value={filters.eventName} />
          <FilterSelect id="events-processor" name="processor" label="Processor" value={filters.processor} anyLabel="Any processor" options={PROCESSORS.map((p) => ({ value: p, label: p }))} />
          <FilterInput id="events-error-code" name="errorCode" label="Error code" value={filters.errorCode} />
          <FilterSelect id="events-cause" name="cause" label="Cause" value={filters.cause} anyLabel="Any cause" options={FAILURE_CAUSE_ORDER.map((c) => ({ value: c, label: FAILURE_CAUSES[c].label }))} />
          {/* Blank is receipt, the default basis (ADR 012). */}
          <FilterSelect id="events-time" name="time" label="Time range of" value={filters.time} anyLabel="Receipt" options={[{ value: 'occurred', label: 'Usage' }]} />
          <FilterInput id="events-from" name="from" type="datetime-local" label="From (UTC)" value={filters.from} />
          <FilterInput id="events-to" name="to" type="datetime-local" label="Before (UTC)" value={filters.to} />
        </FilterBar>
      </section>

      <RetryError error={error} />

      {failures && failures.groups.length > 0 ? (
        <section aria-labelledby="failures-heading" className="panel">
          <h2 id="failures-heading">Failures by error code</h2>
          <p className="muted">
            {failures.capped ? 'Counted over the newest 10,000 failed events matching the filters.' : 'Failed events matching the filters.'}
          </p>
          <DeskTable
            label="Failures by error code"
            rows={failures.groups}
            rowKey={(g) => `${g.code}|${g.cause}`}
            columns={[
              {
                header: 'Error code',
                cell: (g) => (
                  <Link to={query({ status: 'failed', errorCode: g.code, cause: g.cause })}>
                    <code>{g.code}</code>
                  </Link>
                ),
              },
              { header: 'Cause', cell: (g) => <CauseWords cause={g.cause} /> },
              { header: 'Events', numeric: true, cell: (g) => `${g.count.toLocaleString('en-US')}${failures.capped && g === failures.groups[0] ? '+' : ''}` },
              { header: 'Example message', cell: (g) => g.sample ?? <Missing /> },
            ]}
          />
        </section>
      ) : null}

      {canRetryFilter ? (
        <section aria-labelledby="retry-all-heading" className="panel">
          <h2 id="retry-all-heading">Retry every failed event matching these filters</h2>
          {loaderData.retryAllBlocker ? (
            <p className="muted">{loaderData.retryAllBlocker}</p>
          ) : preview ? (
            <Form method="post" action={selfAction} className="stack">
              <SubmissionKey />
              <p data-testid="retry-preview">
                <strong>{preview.matching.toLocaleString('en-US')}</strong> failed event{preview.matching === 1 ? '' : 's'} match:{' '}
                {preview.retryable.toLocaleString('en-US')} can be retried now
                {preview.needsForce > 0 ? `, ${preview.needsForce.toLocaleString('en-US')} only with force (first attempt over 23 h ago)` : ''}.
              </p>
              {preview.byCause.length > 0 ? (
                <ul className="stack" aria-label="By cause" data-testid="retry-preview-causes">
                  {preview.byCause.map((c) => (
                    <li key={c.cause}>
                      <strong>{c.label}</strong>: {c.fixed.toLocaleString('en-US')} will be sent again
                      {c.unchanged > 0 ? `, ${c.unchanged.toLocaleString('en-US')} skipped as the cause looks unchanged. ${c.fix}` : '.'}
                    </li>
                  ))}
                </ul>
              ) : null}
              <input type="hidden" name="intent" value="retry-filter" />
              <AnywayField idPrefix="retry-all" />
              {canRetryAny ? <ForceFields idPrefix="retry-all" /> : null}
              <div className="form-actions">
                <button type="submit" className="button button-primary" disabled={preview.matching === 0 || submitting === 'retry-filter'}>
                  {submitting === 'retry-filter' ? 'Retrying…' : `Confirm: retry ${preview.matching.toLocaleString('en-US')} events`}
                </button>
                <Link to={selfAction} className="button button-quiet">
                  Cancel
                </Link>
              </div>
            </Form>
          ) : (
            <Link to={query({ confirm: 'retry-all' })} className="button button-secondary">
              Preview retry of all matching…
            </Link>
          )}
        </section>
      ) : null}

      <section aria-labelledby="events-list-heading" aria-busy={loading}>
        <h2 id="events-list-heading" className="visually-hidden">
          Events
        </h2>
        {page.events.length === 0 ? (
          <p className="empty">
            {page.unknownCustomer ? `No customer "${filters.customer}".` : filtered ? 'No events match these filters.' : 'No events yet.'}
          </p>
        ) : (
          <Form method="post" action={selfAction} className="stack">
            <SubmissionKey />
            <input type="hidden" name="intent" value="retry-selection" />
            <DeskTable
              label="Events list"
              cards
              rows={page.events}
              rowKey={(e) => e.id}
              columns={[
                canSelect && {
                  header: 'Select',
                  hiddenHeader: true,
                  cell: (e) =>
                    e.status === 'failed' && e.processor === 'stripe' ? (
                      <input type="checkbox" name="ids" value={e.id} id={`select-${e.id}`} aria-label={`Select event ${e.identifier}`} />
                    ) : null,
                },
                {
                  header: 'Event',
                  cell: (e) => (
                    <Link to={`/events/${e.id}`}>
                      <code>{e.identifier}</code>
                    </Link>
                  ),
                },
                {
                  header: 'Status',
                  cell: (e) => (
                    <>
                      <StateBadge kind="event" state={e.status} />
                      {e.attentionReason ? <span className="block muted">{e.attentionReason}</span> : null}
                    </>
                  ),
                },
                { header: 'Customer', cell: (e) => <Link to={`/customers/${e.customerId}`}>{e.customerExternalId}</Link> },
                { header: 'Event name', cell: (e) => <code>{e.eventName}</code> },
                { header: 'Value', numeric: true, cell: (e) => e.value },
                { header: 'Occurred', className: 'nowrap', cell: (e) => formatTimestamp(e.occurredAt) },
                { header: 'Received', className: 'nowrap', cell: (e) => formatTimestamp(e.receivedAt) },
                { header: 'Processor', cell: (e) => e.processor },
                {
                  header: 'Last error',
                  cell: (e) =>
                    e.lastErrorCode ? (
                      <>
                        <code>{e.lastErrorCode}</code>
                        {e.status === 'failed' ? <span className="block muted">{FAILURE_CAUSES[causeOf(e.lastErrorCode, e.lastErrorMessage)].label}</span> : null}
                      </>
                    ) : (
                      <Missing />
                    ),
                },
              ]}
            />
            {selectable.length > 0 ? (
              <fieldset className="panel">
                <legend>Retry the selected failed events</legend>
                {canRetryAny ? null : <p className="field-help">These are all one customer's events.</p>}
                <AnywayField idPrefix="retry-selection" />
                {canRetryAny ? <ForceFields idPrefix="retry-selection" /> : null}
                <button type="submit" className="button button-primary" disabled={submitting === 'retry-selection'}>
                  {submitting === 'retry-selection' ? 'Retrying…' : 'Retry selected'}
                </button>
              </fieldset>
            ) : canRetryOwn && !canSelect && page.events.some((e) => e.status === 'failed') ? (
              <p className="field-help">To retry selected events, filter the list to one customer first: support retries one customer's events at a time.</p>
            ) : null}
          </Form>
        )}
        <KeysetPager label="Events pages" path="/events" filters={filters} newer={page.newer} older={page.older} />
      </section>
    </>
  );
}

/** A failure cause in words, its fix on hover. */
function CauseWords({ cause }: { cause: FailureCause }) {
  return <span title={FAILURE_CAUSES[cause].fix}>{FAILURE_CAUSES[cause].label}</span>;
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}

/** How far the jobs have got with a retry: refreshed every 2 s while events are still pending (a link without JS). */
function RetryProgressPanel({ progress, refreshTo }: { progress: RetryProgress; refreshTo: string }) {
  const revalidator = useRevalidator();
  const done = progress.reported + progress.failed;
  const running = progress.pending > 0;
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => {
      if (revalidator.state === 'idle') void revalidator.revalidate();
    }, 2000);
    return () => clearInterval(timer);
  }, [running, revalidator]);
  return (
    <section aria-labelledby="retry-progress-heading" className="panel" data-testid="retry-progress">
      <h2 id="retry-progress-heading">{running ? 'Retry in progress' : 'Retry finished'}</h2>
      <p>
        {progress.moved.toLocaleString('en-US')} {progress.moved === 1 ? 'event' : 'events'} sent again by {progress.actorLabel} at{' '}
        {formatTimestamp(progress.at)}
        {progress.tracked < progress.moved ? ` (following the first ${progress.tracked.toLocaleString('en-US')})` : ''}.
      </p>
      <label htmlFor="retry-progress-bar">
        {done.toLocaleString('en-US')} of {progress.tracked.toLocaleString('en-US')} finished
      </label>
      <progress id="retry-progress-bar" max={Math.max(progress.tracked, 1)} value={done} />
      <p role="status" aria-live="polite">
        {progress.reported.toLocaleString('en-US')} reported, {progress.pending.toLocaleString('en-US')} pending,{' '}
        {progress.failed.toLocaleString('en-US')} failed again
        {running ? (
          <>
            {' '}
            · <Link to={refreshTo}>Refresh</Link>
          </>
        ) : null}
      </p>
    </section>
  );
}
