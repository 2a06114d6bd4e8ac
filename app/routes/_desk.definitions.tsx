import { data, Form, Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.definitions';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList } from '../components/forms';
import { AGGREGATIONS, addDefinitionAndReplay, replayBlockedWindows } from '../billing/definitions';
import { ConflictError, NotFoundError, ValidationError } from '../billing/errors';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatUnitPrice } from '../utils/money';
import { formatTimestamp } from '../utils/misc';
import { actorOf, requireUserWithPermission, userHasPermission } from '../utils/permissions.server';
import { DeskCount } from '../components/desk-count';
import { readDeskCountFor } from '../billing/overview';
import { DeskTable } from '../components/desk-table';
import { SubmissionKey } from '../components/submission-key';
import { onceForSubmission } from '../utils/submissions.server';
import {
  CURRENCIES,
  definitionFromForm,
  formErrorsFrom,
  loadDefinitionsPage,
  perUnitsField,
  priceField,
  replaySummary,
  ReplaySchema,
  type FormErrors,
  type FormValues,
} from './_desk.definitions.server';

export const meta: Route.MetaFunction = () => [{ title: 'Definitions · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:meter-event:any');
  const url = new URL(request.url);
  const { pool } = getServices(context);
  const [page, deskCount] = await Promise.all([loadDefinitionsPage(pool), readDeskCountFor(pool, url)]);
  const prefill = url.searchParams.get('eventName')?.trim().slice(0, 100) ?? '';
  return {
    ...page,
    deskCount,
    // Field names from the server module: the component must not import it (it stays out of the browser bundle).
    plans: page.plans.map((p) => ({ ...p, priceField: priceField(p.id), perUnitsField: perUnitsField(p.id) })),
    prefill,
    canWrite: userHasPermission(user, 'write:definition:any'),
    aggregations: [...AGGREGATIONS],
    currencies: [...CURRENCIES],
  };
}

// A double click or a resent form runs this once (app/utils/submissions.server.ts).
export async function action(args: Route.ActionArgs) {
  return onceForSubmission(args.request, args.context, () => act(args));
}

async function act({ request, context }: Route.ActionArgs) {
  const user = await requireUserWithPermission(request, context, 'write:definition:any');
  const form = Object.fromEntries([...(await request.formData())].map(([k, v]) => [k, typeof v === 'string' ? v : ''])) as FormValues;
  const { pool } = getServices(context);
  if (form.intent === 'replay') {
    const parsed = ReplaySchema.safeParse(form);
    if (!parsed.success) return data({ intent: 'replay', values: form, errors: { form: parsed.error.issues.map((i) => i.message) } as FormErrors }, { status: 400 });
    try {
      const r = await replayBlockedWindows(pool, { eventName: parsed.data.eventName, actor: actorOf(user) });
      return redirectWithToast('/definitions', context, { title: `Replayed ${parsed.data.eventName}`, description: replaySummary(r) });
    } catch (error) {
      if (error instanceof NotFoundError) {
        return data({ intent: 'replay', values: form, errors: { form: [`No meter defines "${parsed.data.eventName}" yet: add its definition first.`] } as FormErrors }, { status: 400 });
      }
      throw error;
    }
  }
  if (form.intent !== 'add-definition') return data({ intent: 'add-definition', values: form, errors: { form: ['Unknown action'] } as FormErrors }, { status: 400 });
  const { plans } = await loadDefinitionsPage(pool);
  const parsed = definitionFromForm(form, plans.map((p) => p.id));
  if (!parsed.ok) return data({ intent: 'add-definition', values: form, errors: parsed.errors }, { status: 400 });
  try {
    const { definition, replay } = await addDefinitionAndReplay(pool, parsed.input, actorOf(user));
    return redirectWithToast('/definitions', context, {
      title: `Definition added: ${definition.meter.eventName}`,
      description: `${plural(definition.eventsAttached, 'event')} matched, ${plural(definition.prices.length, 'price')}. ${replaySummary(replay)}`,
    });
  } catch (error) {
    if (error instanceof ValidationError || error instanceof ConflictError) {
      const errors = formErrorsFrom(error instanceof ValidationError ? error.errors : error.errors, parsed.planOrder);
      if (Object.keys(errors).length === 0) errors.form = [error.message];
      return data({ intent: 'add-definition', values: form, errors }, { status: 400 });
    }
    throw error;
  }
}

const plural = (n: number, one: string) => `${n.toLocaleString('en-US')} ${one}${n === 1 ? '' : 's'}`;

const AGGREGATION_HELP: Record<string, string> = {
  sum: 'Sum of the values',
  count: 'Number of events',
  max: 'Largest value',
  last: 'Latest value',
};

export default function DefinitionsPage({ loaderData, actionData }: Route.ComponentProps) {
  const { meters, inbox, plans, prefill, canWrite, aggregations, currencies, deskCount } = loaderData;
  const navigation = useNavigation();
  const submitting = navigation.state === 'submitting' && navigation.formData?.get('intent') === 'add-definition';
  const addErrors = actionData?.intent === 'add-definition' ? actionData.errors : null;
  const values: FormValues = actionData?.intent === 'add-definition' ? actionData.values : {};
  const errorsFor = (field: string) => addErrors?.[field] ?? null;
  const invalid = (field: string) => (errorsFor(field) ? true : undefined);
  const eventName = values.eventName ?? prefill;
  return (
    <>
      <h1>Definitions</h1>
      <p className="lede">Meters say how an event name is measured; their prices, per plan, are what Braintree windows bill.</p>

      <section aria-labelledby="inbox-heading" className="panel">
        <h2 id="inbox-heading">Missing definitions</h2>
        <DeskCount line={deskCount} />
        {actionData?.intent === 'replay' ? <ErrorList id="replay-errors" errors={actionData.errors.form} /> : null}
        {inbox.length === 0 ? (
          <p className="empty">No missing definitions: every stored event name has a meter.</p>
        ) : (
          <>
            <p>Events stored under a name no meter defined. Windows that are not charged yet can be replayed once the definition exists; charged windows are never touched.</p>
            <DeskTable
              label="Missing definitions inbox"
              cards
              rows={inbox}
              rowKey={(m) => m.eventName}
              columns={[
                { header: 'Event name', rowHeader: true, cell: (m) => <code>{m.eventName}</code> },
                {
                  header: 'Customers',
                  cell: (m) => (
                    <>
                      {m.customers}
                      <span className="muted block">
                        {m.customerNames.join(', ')}
                        {m.customers > m.customerNames.length ? ', …' : ''}
                      </span>
                    </>
                  ),
                },
                { header: 'Events', numeric: true, cell: (m) => m.events.toLocaleString('en-US') },
                { header: 'First seen', cell: (m) => formatTimestamp(m.firstSeen) },
                { header: 'Last seen', cell: (m) => formatTimestamp(m.lastSeen) },
                {
                  header: 'Blocked windows',
                  cell: (m) => (
                    <>
                      {m.blockedWindows}
                      {m.chargedWindows ? <span className="muted block">{plural(m.chargedWindows, 'charged window')} (not touched)</span> : null}
                    </>
                  ),
                },
                {
                  header: 'Action',
                  cell: (m) =>
                    !canWrite ? (
                      <span className="muted">An operator can add it</span>
                    ) : m.definedMeterId ? (
                      <Form method="post" className="manage-form">
                        <SubmissionKey />
                        <input type="hidden" name="intent" value="replay" />
                        <input type="hidden" name="eventName" value={m.eventName} />
                        <button type="submit" className="button button-secondary">
                          Replay<span className="visually-hidden"> the windows blocked by {m.eventName}</span>
                        </button>
                      </Form>
                    ) : (
                      <Link to={`/definitions?eventName=${encodeURIComponent(m.eventName)}#add-heading`} className="button button-secondary">
                        Define<span className="visually-hidden"> {m.eventName}</span>
                      </Link>
                    ),
                },
              ]}
            />
          </>
        )}
      </section>

      {canWrite ? (
        <section aria-labelledby="add-heading" className="panel">
          <h2 id="add-heading">Add definition and replay</h2>
          <p className="field-help">
            Creates the meter and its prices (in force from now), matches the events already stored under this name, and re-authors every window they blocked that has no
            sale yet. Windows already charged are not touched: their unmatched events stay visible on the window.
          </p>
          <Form method="post" className="manage-form" aria-labelledby="add-heading" key={`${prefill}|${actionData ? 'err' : ''}`}>
            <SubmissionKey />
            <input type="hidden" name="intent" value="add-definition" />
            <ErrorList id="add-form-errors" errors={errorsFor('form')} />
            <div className="field">
              <label htmlFor="def-event-name">Event name</label>
              <input
                id="def-event-name"
                name="eventName"
                type="text"
                required
                maxLength={100}
                pattern="[a-z0-9_.:\-]{1,100}"
                defaultValue={eventName}
                aria-invalid={invalid('eventName')}
                aria-describedby="def-event-name-help def-event-name-errors"
              />
              <p id="def-event-name-help" className="field-help">
                As the host app sends it: a-z, 0-9, _ . : - (up to 100 characters).
              </p>
              <ErrorList id="def-event-name-errors" errors={errorsFor('eventName')} />
            </div>
            <div className="field">
              <label htmlFor="def-display-name">Display name</label>
              <input
                id="def-display-name"
                name="displayName"
                type="text"
                required
                maxLength={200}
                defaultValue={values.displayName ?? ''}
                aria-invalid={invalid('displayName')}
                aria-describedby="def-display-name-errors"
              />
              <ErrorList id="def-display-name-errors" errors={errorsFor('displayName')} />
            </div>
            <div className="field">
              <label htmlFor="def-aggregation">Aggregation</label>
              <select id="def-aggregation" name="aggregation" defaultValue={values.aggregation ?? 'sum'} aria-invalid={invalid('aggregation')} aria-describedby="def-aggregation-errors">
                {aggregations.map((a) => (
                  <option key={a} value={a}>
                    {a} — {AGGREGATION_HELP[a]}
                  </option>
                ))}
              </select>
              <ErrorList id="def-aggregation-errors" errors={errorsFor('aggregation')} />
            </div>
            <div className="field">
              <label htmlFor="def-currency">Currency</label>
              <select id="def-currency" name="currency" defaultValue={values.currency ?? 'usd'}>
                {currencies.map((c) => (
                  <option key={c} value={c}>
                    {c.toUpperCase()}
                  </option>
                ))}
              </select>
            </div>
            <div className="field">
              <label htmlFor="def-rounding">Rounding of billed units</label>
              <select id="def-rounding" name="rounding" defaultValue={values.rounding ?? 'up'}>
                <option value="up">Round up</option>
                <option value="down">Round down</option>
              </select>
            </div>
            <fieldset className="field">
              <legend>Price per plan</legend>
              <p className="field-help">Leave a plan's price blank to give it none (its windows keep these events unmatched).</p>
              {plans.map((p) => (
                <div key={p.id} className="field">
                  <label htmlFor={`def-price-${p.code}`}>{p.name}: unit price</label>
                  <input
                    id={`def-price-${p.code}`}
                    name={p.priceField}
                    type="text"
                    inputMode="decimal"
                    placeholder="0.00015"
                    defaultValue={values[p.priceField] ?? ''}
                    aria-invalid={invalid(p.priceField)}
                    aria-describedby={`def-price-${p.code}-errors`}
                  />
                  <ErrorList id={`def-price-${p.code}-errors`} errors={errorsFor(p.priceField)} />
                  <label htmlFor={`def-per-${p.code}`}>{p.name}: per units</label>
                  <input
                    id={`def-per-${p.code}`}
                    name={p.perUnitsField}
                    type="text"
                    inputMode="numeric"
                    placeholder="1"
                    defaultValue={values[p.perUnitsField] ?? ''}
                    aria-invalid={invalid(p.perUnitsField)}
                    aria-describedby={`def-per-${p.code}-errors`}
                  />
                  <ErrorList id={`def-per-${p.code}-errors`} errors={errorsFor(p.perUnitsField)} />
                </div>
              ))}
            </fieldset>
            <div className="field">
              <label htmlFor="def-reason">Reason (optional)</label>
              <input id="def-reason" name="reason" type="text" maxLength={500} defaultValue={values.reason ?? ''} />
            </div>
            <div className="form-actions">
              <button type="submit" className="button button-primary" disabled={submitting}>
                {submitting ? 'Adding and replaying…' : 'Add definition and replay'}
              </button>
            </div>
          </Form>
        </section>
      ) : null}

      <section aria-labelledby="meters-heading" className="panel">
        <h2 id="meters-heading">Meters</h2>
        <DeskTable
          label="Meters and prices"
          cards
          rows={meters}
          rowKey={(m) => m.id}
          empty="No meters yet."
          columns={[
            { header: 'Event name', rowHeader: true, cell: (m) => <code>{m.eventName}</code> },
            { header: 'Display name', cell: (m) => m.displayName },
            { header: 'Aggregation', cell: (m) => m.aggregation },
            {
              header: 'Prices',
              cell: (m) =>
                m.prices.length === 0 ? (
                  <span className="muted">No price on any plan</span>
                ) : (
                  <ul>
                    {m.prices.map((p) => (
                      <li key={p.id}>
                        <strong>{p.planName}</strong>: {`${formatUnitPrice(p.unitAmountDecimal, p.currency, p.perUnits)}, rounded ${p.rounding}`}
                        <span className="muted block">
                          from {formatTimestamp(p.effectiveFrom)}
                          {p.effectiveTo ? ` to ${formatTimestamp(p.effectiveTo)}` : ''}
                        </span>
                      </li>
                    ))}
                  </ul>
                ),
            },
          ]}
        />
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
