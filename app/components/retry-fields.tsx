// The "force past the 23 h guard" controls shared by every retry form (events list, event detail, customer).
import { Form } from 'react-router';
import { SubmissionKey } from './submission-key';

/** Force past the 23 h guard, with the reason the audit log keeps. Only shown to roles allowed to force. */
export function ForceFields({ idPrefix }: { idPrefix: string }) {
  return (
    <div className="form-grid">
      <div className="field">
        <label htmlFor={`${idPrefix}-force`}>
          <input id={`${idPrefix}-force`} type="checkbox" name="force" value="on" /> Force past the 23 h guard
        </label>
        <p className="field-help" id={`${idPrefix}-force-help`}>
          Only if Stripe did not count the first attempt: a re-send after 24 h can be counted twice.
        </p>
      </div>
      <div className="field">
        <label htmlFor={`${idPrefix}-reason`}>Reason (required to force)</label>
        <input id={`${idPrefix}-reason`} type="text" name="reason" maxLength={500} />
      </div>
    </div>
  );
}

/** Re-send even events whose failure cause looks unchanged (a missing meter not yet defined, an unknown customer). */
export function AnywayField({ idPrefix }: { idPrefix: string }) {
  return (
    <div className="field">
      <label htmlFor={`${idPrefix}-anyway`}>
        <input id={`${idPrefix}-anyway`} type="checkbox" name="anyway" value="on" /> Retry anyway, even where the cause looks unchanged
      </label>
      <p className="field-help">Without it, events whose cause is still there (no meter yet, a customer Stripe does not know) are skipped and counted.</p>
    </div>
  );
}

/** The retry form of a page that retries only its own subject (one event, or one customer's failed events). */
export function RetrySubjectForm(props: { intent: 'retry-one' | 'retry-customer'; canForce: boolean; retrying: boolean; label: string }) {
  return (
    <Form method="post" className="stack">
      <SubmissionKey />
      <input type="hidden" name="intent" value={props.intent} />
      <AnywayField idPrefix={props.intent} />
      {props.canForce ? <ForceFields idPrefix={props.intent} /> : null}
      <button type="submit" className="button button-primary" disabled={props.retrying}>
        {props.retrying ? 'Retrying…' : props.label}
      </button>
    </Form>
  );
}

/** A refused or invalid retry's message, as the action returned it. */
export function RetryError({ error }: { error: { message: string } | undefined }) {
  return error ? (
    <div className="form-errors" role="alert">
      {error.message}
    </div>
  ) : null;
}
