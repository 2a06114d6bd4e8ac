// Labelled form controls for Conform fields: every control has a visible label, its errors are tied to it with
// aria-describedby (Conform's getInputProps sets that and aria-invalid), and help text is announced too.
import { getInputProps, type FieldMetadata } from '@conform-to/react';
import type { InputHTMLAttributes, ReactNode, SelectHTMLAttributes } from 'react';

export function ErrorList({ id, errors }: { id?: string; errors?: ReadonlyArray<string> | null }) {
  const list = errors?.filter(Boolean) ?? [];
  if (list.length === 0) return id ? <div id={id} /> : null;
  return (
    <ul id={id} className="field-errors">
      {list.map((e) => (
        <li key={e}>{e}</li>
      ))}
    </ul>
  );
}

export function Field({
  label,
  inputProps,
  errors,
  errorId,
  help,
}: {
  label: ReactNode;
  inputProps: InputHTMLAttributes<HTMLInputElement> & { id: string; key?: string | undefined };
  errors?: ReadonlyArray<string> | null;
  errorId?: string;
  help?: ReactNode;
}) {
  const { key, ...props } = inputProps;
  const helpId = help ? `${props.id}-help` : undefined;
  const describedBy = [props['aria-describedby'], helpId].filter(Boolean).join(' ') || undefined;
  return (
    <div className="field">
      <label htmlFor={props.id}>{label}</label>
      <input key={key} {...props} aria-describedby={describedBy} />
      {help ? (
        <p id={helpId} className="field-help">
          {help}
        </p>
      ) : null}
      <ErrorList id={errorId} errors={errors} />
    </div>
  );
}

export function SelectField({
  label,
  selectProps,
  options,
  errors,
  errorId,
}: {
  label: ReactNode;
  selectProps: SelectHTMLAttributes<HTMLSelectElement> & { id: string; key?: string | undefined };
  options: ReadonlyArray<{ value: string; label: string }>;
  errors?: ReadonlyArray<string> | null;
  errorId?: string;
}) {
  const { key, ...props } = selectProps;
  return (
    <div className="field">
      <label htmlFor={props.id}>{label}</label>
      <select key={key} {...props}>
        {options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
      <ErrorList id={errorId} errors={errors} />
    </div>
  );
}

/** The optional reason an admin change carries into the audit log. */
export function ReasonField({ field }: { field: FieldMetadata<string | undefined> }) {
  return <Field label="Reason (optional)" inputProps={getInputProps(field, { type: 'text' })} errors={field.errors} errorId={field.errorId} />;
}
