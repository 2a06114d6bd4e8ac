// Alerts (ADR 036): what is firing now and what resolved, the rules and channels, and every delivery with its
// answer. Everyone reads; operators and admins create rules and channels and send test notifications.
import { getFormProps, getInputProps, getSelectProps, useForm, type SubmissionResult } from '@conform-to/react';
import { parseWithZod } from '@conform-to/zod/v4';
import { Form } from 'react-router';
import { z } from 'zod';
import type { Route } from './+types/_desk.alerts';
import { CHANNEL_KINDS, KIND_GUIDE, RULE_KINDS } from '../billing/alerts/kinds';
import { OPS_EVENT_TYPES } from '../billing/ops-events';
import { CreatePanel, useCreateForm } from '../components/admin-create-form';
import { DeskTable } from '../components/desk-table';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList, Field, ReasonField, SelectField } from '../components/forms';
import { SubmissionKey } from '../components/submission-key';
import { getDesk, getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission, userHasPermission } from '../utils/permissions.server';
import { adminAction, type AdminActionData } from './_desk.admin.server';
import { createChannel, createRule, readAlertsPage, sendTestNotification, setRuleEnabled } from './_desk.alerts.server';

const reason = z.string().trim().max(500, 'Keep the reason under 500 characters').optional();
const number = z.string().trim().max(20).optional();
const CreateRuleSchema = z.object({
  intent: z.literal('create-rule'),
  name: z.string({ error: 'Name the rule' }).trim().min(1).max(100, 'Use at most 100 characters'),
  kind: z.string({ error: 'Choose a kind' }),
  minutes: number,
  hours: number,
  threshold: number,
  code: z.string().trim().max(100).optional(),
  type: z.string().optional(),
  source: z.string().optional(),
  customer: z.string().trim().max(200).optional(),
  meter: z.string().trim().max(200).optional(),
  usualHours: z.string().optional(),
  period: z.string().optional(),
  factor: number,
  minimum: number,
  amount: number,
  currency: z.string().trim().max(10).optional(),
  percent: z.string().optional(),
  reason,
});
/** The form's fields that are a rule's numbers; each kind's schema takes its own and ignores the rest. */
const PARAM_FIELDS = ['minutes', 'hours', 'threshold', 'code', 'type', 'source', 'customer', 'meter', 'usualHours', 'period', 'factor', 'minimum', 'amount', 'currency', 'percent'] as const;
const ToggleRuleSchema = z.object({ intent: z.literal('toggle-rule'), ruleId: z.uuid('Unknown rule'), enabled: z.enum(['true', 'false']), reason });
const CreateChannelSchema = z.object({
  intent: z.literal('create-channel'),
  name: z.string({ error: 'Name the channel' }).trim().min(1).max(100, 'Use at most 100 characters'),
  kind: z.string({ error: 'Choose a kind' }),
  url: z.string({ error: 'Give the URL or email address to send to' }).trim().max(2_000),
  reason,
});
const TestChannelSchema = z.object({ intent: z.literal('test-channel'), channelId: z.uuid('Unknown channel') });
const AlertsActionSchema = z.discriminatedUnion('intent', [CreateRuleSchema, ToggleRuleSchema, CreateChannelSchema, TestChannelSchema]);

export const meta: Route.MetaFunction = () => [{ title: 'Alerts · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:alert:any');
  return { page: await readAlertsPage(getServices(context).pool), canManage: userHasPermission(user, 'manage:alert:any'), emailAlerts: getDesk(context).emailAlerts };
}

export async function action({ request, context }: Route.ActionArgs) {
  return adminAction(request, context, 'manage:alert:any', { schema: AlertsActionSchema, targetField: 'target' }, async (input, { actor, pool, refuse }) => {
    switch (input.intent) {
      case 'create-rule': {
        // Only the kind's own numbers are passed on; its schema (app/billing/alerts/rules.ts) refuses impossible ones.
        const params = Object.fromEntries(PARAM_FIELDS.map((f) => [f, input[f]] as const).filter(([, v]) => v !== undefined && v !== ''));
        const outcome = await createRule(pool, actor, { name: input.name, kind: input.kind, params, reason: input.reason });
        if (!outcome.ok) return refuse(outcome);
        return redirectWithToast('/alerts', context, { title: `Rule "${outcome.value.name}" created`, description: 'It is evaluated every minute.' });
      }
      case 'toggle-rule': {
        const enabled = input.enabled === 'true';
        const outcome = await setRuleEnabled(pool, actor, { ruleId: input.ruleId, enabled, reason: input.reason });
        if (!outcome.ok) return refuse(outcome);
        return redirectWithToast('/alerts', context, { title: `Rule "${outcome.value.name}" turned ${enabled ? 'on' : 'off'}` });
      }
      case 'create-channel': {
        const outcome = await createChannel(pool, actor, input, { email: getDesk(context).emailAlerts });
        if (!outcome.ok) return refuse(outcome);
        const { name, secret } = outcome.value;
        return redirectWithToast(
          '/alerts',
          context,
          { title: `Channel "${name}" created` },
          secret
            ? { reveal: { label: `Signing secret of "${name}"`, value: secret, note: 'Copy it into the receiver now to check the Meterdesk-Signature header: it will not be shown again.' } }
            : {},
        );
      }
      case 'test-channel': {
        const outcome = await sendTestNotification(pool, actor, input);
        if (!outcome.ok) return refuse(outcome);
        return redirectWithToast('/alerts', context, { title: `Test notification queued for "${outcome.value.name}"`, description: 'Its delivery and the answer appear below.' });
      }
    }
  });
}

const paramsText = (params: Record<string, unknown>) =>
  Object.entries(params)
    .map(([k, v]) => `${k} ${String(v)}`)
    .join(', ');
const valuesText = (values: Record<string, unknown>) =>
  Object.entries(values)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' · ');

export default function AlertsPage({ loaderData, actionData }: Route.ComponentProps) {
  const { page, canManage, emailAlerts } = loaderData;
  const last = actionData as AdminActionData;
  const lastFor = (intent: string, target = '') => (last?.intent === intent && last.target === target ? last.result : undefined);
  return (
    <>
      <h1>Alerts</h1>
      <section aria-labelledby="firing-heading" className="panel">
        <h2 id="firing-heading">Firing now</h2>
        <DeskTable
          label="Firing alerts"
          rows={page.open}
          rowKey={(f) => f.id}
          empty="Nothing is firing."
          columns={[
            { header: 'Rule', rowHeader: true, cell: (f) => f.ruleName },
            { header: 'What fired it', cell: (f) => f.summary },
            { header: 'Values', cell: (f) => <code>{valuesText(f.values)}</code> },
            { header: 'Since', cell: (f) => formatTimestamp(f.firedAt) },
            { header: 'Last checked', cell: (f) => formatTimestamp(f.lastEvaluatedAt) },
          ]}
        />
      </section>
      <section aria-labelledby="resolved-heading" className="panel">
        <h2 id="resolved-heading">Recently resolved</h2>
        <DeskTable
          label="Resolved alerts"
          rows={page.resolved}
          rowKey={(f) => f.id}
          empty="No alert has resolved yet."
          columns={[
            { header: 'Rule', rowHeader: true, cell: (f) => f.ruleName },
            { header: 'What fired it', cell: (f) => f.summary },
            { header: 'Fired', cell: (f) => formatTimestamp(f.firedAt) },
            { header: 'Resolved', cell: (f) => formatTimestamp(f.resolvedAt) },
          ]}
        />
      </section>
      <section aria-labelledby="rules-heading" className="panel">
        <h2 id="rules-heading">Rules</h2>
        <DeskTable
          label="Alert rules"
          rows={page.rules}
          rowKey={(r) => r.id}
          empty="No rules yet."
          columns={[
            { header: 'Name', rowHeader: true, cell: (r) => r.name },
            { header: 'Kind', cell: (r) => <a href={`#kind-${r.kind}`}>{r.description}</a> },
            { header: 'Numbers', cell: (r) => paramsText(r.params) },
            { header: 'State', cell: (r) => (!r.enabled ? <span className="badge badge-off">off</span> : r.firing ? <span className="badge badge-tone-failed">firing</span> : <span className="badge badge-on">ok</span>) },
            { header: 'Last evaluated', cell: (r) => (r.lastSummary ? <>{r.lastSummary} <span className="muted">({formatTimestamp(r.lastEvaluatedAt)})</span></> : <span className="muted">not yet</span>) },
            { header: 'Last fired', cell: (r) => formatTimestamp(r.lastFiredAt) },
            ...(canManage ? [{ header: 'Turn', cell: (r: (typeof page.rules)[number]) => <ToggleRuleForm rule={r} lastResult={lastFor('toggle-rule', r.id)} /> }] : []),
          ]}
        />
      </section>
      <section aria-labelledby="kinds-heading" className="panel">
        <h2 id="kinds-heading">What each kind means, and what to check</h2>
        <dl>
          {Object.entries(RULE_KINDS).map(([kind, description]) => (
            <div key={kind} id={`kind-${kind}`}>
              <dt>{description}</dt>
              <dd>
                {KIND_GUIDE[kind as keyof typeof KIND_GUIDE].check} <a href={KIND_GUIDE[kind as keyof typeof KIND_GUIDE].href}>Open the page that fixes it</a>
              </dd>
            </div>
          ))}
        </dl>
      </section>
      {canManage ? <CreateRuleForm key={`rules-${page.rules.length}`} lastResult={lastFor('create-rule')} /> : null}
      <section aria-labelledby="channels-heading" className="panel">
        <h2 id="channels-heading">Channels</h2>
        <p className="muted">Every enabled channel gets each firing and each resolution. Webhooks are signed (README, “Alert webhooks”).</p>
        <DeskTable
          label="Notification channels"
          rows={page.channels}
          rowKey={(c) => c.id}
          empty="No channels yet: firings show here and on the overview only."
          columns={[
            { header: 'Name', rowHeader: true, cell: (c) => c.name },
            { header: 'Kind', cell: (c) => c.kind },
            { header: 'Sends to', cell: (c) => <code>{c.origin}</code> },
            { header: 'Secret', cell: (c) => (c.secretPrefix ? <code>{c.secretPrefix}…</code> : <span className="muted">none</span>) },
            {
              header: 'Health',
              cell: (c) =>
                c.failingSince ? (
                  <span>
                    <span className="badge badge-tone-failed">failing since {formatTimestamp(c.failingSince)}</span> {c.lastError}
                  </span>
                ) : (
                  <span className="badge badge-on">ok</span>
                ),
            },
            ...(canManage ? [{ header: 'Test', cell: (c: (typeof page.channels)[number]) => <TestChannelForm channel={c} lastResult={lastFor('test-channel', c.id)} /> }] : []),
          ]}
        />
      </section>
      {canManage ? <CreateChannelForm key={`channels-${page.channels.length}`} lastResult={lastFor('create-channel')} emailAlerts={emailAlerts} /> : null}
      <section aria-labelledby="deliveries-heading" className="panel">
        <h2 id="deliveries-heading">Recent deliveries</h2>
        <DeskTable
          label="Alert deliveries"
          rows={page.deliveries}
          rowKey={(d) => d.id}
          empty="Nothing sent yet."
          columns={[
            { header: 'Channel', rowHeader: true, cell: (d) => d.channelName },
            { header: 'What', cell: (d) => (d.event === 'test' ? 'test' : `${d.event}: ${d.ruleName ?? ''}`) },
            { header: 'State', cell: (d) => <span className={`badge ${d.state === 'delivered' ? 'badge-on' : d.state === 'failed' ? 'badge-tone-failed' : 'badge-off'}`}>{d.state}</span> },
            { header: 'Attempts', cell: (d) => d.attempts },
            { header: 'Last answer', cell: (d) => (d.lastAttemptAt ? `${d.lastStatus === null ? 'no answer' : `${d.channelKind === 'email' ? 'SMTP' : 'HTTP'} ${d.lastStatus}`} ${d.lastResponse ?? ''}` : <span className="muted">not tried yet</span>) },
            { header: 'Queued', cell: (d) => formatTimestamp(d.createdAt) },
          ]}
        />
      </section>
    </>
  );
}

function useRowForm(id: string, schema: z.ZodType, lastResult: SubmissionResult<string[]> | undefined) {
  return useForm({ id, lastResult, onValidate: ({ formData }) => parseWithZod(formData, { schema }) });
}

function CreateRuleForm({ lastResult }: { lastResult?: SubmissionResult<string[]> }) {
  const [form, fields] = useCreateForm('create-rule', CreateRuleSchema, lastResult);
  const text = (name: 'minutes' | 'hours' | 'threshold' | 'code' | 'customer' | 'meter' | 'factor' | 'minimum' | 'amount' | 'currency', label: string, help: string) => (
    <Field
      label={label}
      inputProps={{ ...getInputProps(fields[name], { type: 'text' }), inputMode: ['minutes', 'hours', 'threshold', 'factor', 'minimum', 'amount'].includes(name) ? 'decimal' : 'text', autoComplete: 'off' }}
      errors={fields[name].errors}
      errorId={fields[name].errorId}
      help={help}
    />
  );
  const select = (name: 'source' | 'period' | 'percent', label: string, options: { value: string; label: string }[]) => (
    <SelectField label={label} selectProps={getSelectProps(fields[name])} options={options} errors={fields[name].errors} errorId={fields[name].errorId} />
  );
  return (
    <CreatePanel headingId="create-rule-heading" heading="Create a rule" form={form} submitText="Create rule" intent="create-rule">
      <Field label="Name" inputProps={{ ...getInputProps(fields.name, { type: 'text' }), autoComplete: 'off' }} errors={fields.name.errors} errorId={fields.name.errorId} />
      <SelectField label="Kind" selectProps={getSelectProps(fields.kind)} options={Object.entries(RULE_KINDS).map(([value, label]) => ({ value, label }))} errors={fields.kind.errors} errorId={fields.kind.errorId} />
      {text('minutes', 'Minutes', 'Reporting lag, silence: the limit. Failure rate, ops event: the span counted.')}
      {text('hours', 'Hours', 'Windows unpaid: hours after the period ended.')}
      {text('threshold', 'More than', 'Failure rate, ops event: fires when the count is above this.')}
      {text('code', 'Error code (optional)', 'Failure rate: count only this code, e.g. no_customer (events) or 2001 (sales).')}
      {select('source', 'Failures of', [
        { value: 'events', label: 'Stripe meter events (failure rate)' },
        { value: 'sales', label: 'Braintree sales (failure rate)' },
      ])}
      <SelectField label="Ops event type" selectProps={getSelectProps(fields.type)} options={[{ value: '', label: '(ops event rules only)' }, ...OPS_EVENT_TYPES.map((t) => ({ value: t, label: t }))]} errors={fields.type.errors} errorId={fields.type.errorId} />
      {text('customer', 'Customer (external id)', 'Silence: one customer instead of the whole ledger. Usage anomaly: one customer instead of all. Budget: the customer.')}
      {text('meter', 'Meter (event name)', 'Usage anomaly: the meter. Silence: one meter instead of the whole ledger.')}
      <Field
        label="Only during its usual hours"
        inputProps={getInputProps(fields.usualHours, { type: 'checkbox' })}
        errors={fields.usualHours.errors}
        errorId={fields.usualHours.errorId}
        help="Silence: fire only in a UTC hour of the day that had usage on at least 4 of the last 7 days."
      />
      {select('period', 'Anomaly over the last', [
        { value: 'hour', label: 'hour, against the median of the 24 hours before' },
        { value: 'day', label: 'day, against the median of the 7 days before' },
      ])}
      {text('factor', 'Times the median', 'Usage anomaly: fires above this many times the median, e.g. 3.')}
      {text('minimum', 'At least (usage)', 'Usage anomaly: the usage a period needs before it counts (default 1).')}
      {text('amount', 'Budget amount', 'Budget: e.g. 500.00, in the currency below.')}
      {text('currency', 'Currency', 'Budget: e.g. usd.')}
      {select('percent', 'Alert at', [
        { value: '50', label: '50 % of the budget' },
        { value: '80', label: '80 % of the budget' },
        { value: '100', label: '100 % of the budget' },
      ])}
      <ReasonField field={fields.reason} />
    </CreatePanel>
  );
}

function CreateChannelForm({ lastResult, emailAlerts }: { lastResult?: SubmissionResult<string[]>; emailAlerts: boolean }) {
  const [form, fields] = useCreateForm('create-channel', CreateChannelSchema, lastResult);
  return (
    <CreatePanel headingId="create-channel-heading" heading="Add a channel" form={form} submitText="Add channel" intent="create-channel">
      <Field label="Name" inputProps={{ ...getInputProps(fields.name, { type: 'text' }), autoComplete: 'off' }} errors={fields.name.errors} errorId={fields.name.errorId} />
      <SelectField label="Kind" selectProps={getSelectProps(fields.kind)} options={Object.entries(CHANNEL_KINDS).map(([value, label]) => ({ value, label }))} errors={fields.kind.errors} errorId={fields.kind.errorId} />
      <Field
        label="Where to send (URL, or email address for Email)"
        inputProps={{ ...getInputProps(fields.url, { type: 'text' }), autoComplete: 'off' }}
        errors={fields.url.errors}
        errorId={fields.url.errorId}
        help={`Webhook, Slack: the URL to POST to; a webhook gets a signing secret, shown once. Email: one or several addresses, separated by commas (${emailAlerts ? 'sent through this server’s SMTP_URL' : 'needs SMTP_URL set on the server, which it is not'}).`}
      />
      <ReasonField field={fields.reason} />
    </CreatePanel>
  );
}

function ToggleRuleForm({ rule, lastResult }: { rule: { id: string; name: string; enabled: boolean }; lastResult?: SubmissionResult<string[]> }) {
  const [form] = useRowForm(`toggle-${rule.id}`, ToggleRuleSchema, lastResult);
  return (
    <Form method="post" {...getFormProps(form)}>
      <SubmissionKey />
      <input type="hidden" name="intent" value="toggle-rule" />
      <input type="hidden" name="target" value={rule.id} />
      <input type="hidden" name="ruleId" value={rule.id} />
      <input type="hidden" name="enabled" value={rule.enabled ? 'false' : 'true'} />
      <ErrorList id={form.errorId} errors={form.errors} />
      <button type="submit" className="button">
        {rule.enabled ? 'Turn off' : 'Turn on'}
        <span className="visually-hidden"> {rule.name}</span>
      </button>
    </Form>
  );
}

function TestChannelForm({ channel, lastResult }: { channel: { id: string; name: string }; lastResult?: SubmissionResult<string[]> }) {
  const [form] = useRowForm(`test-${channel.id}`, TestChannelSchema, lastResult);
  return (
    <Form method="post" {...getFormProps(form)}>
      <SubmissionKey />
      <input type="hidden" name="intent" value="test-channel" />
      <input type="hidden" name="target" value={channel.id} />
      <input type="hidden" name="channelId" value={channel.id} />
      <ErrorList id={form.errorId} errors={form.errors} />
      <button type="submit" className="button">
        Send test<span className="visually-hidden"> to {channel.name}</span>
      </button>
    </Form>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
