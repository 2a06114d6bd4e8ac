// The create form of an admin page (a user, an API key): validated on blur with the page's Zod schema, sent with the
// "create" intent and a submission key, the form's own errors above the fields and one primary button below.
import { getFormProps, useForm, type DefaultValue, type FormMetadata, type SubmissionResult } from '@conform-to/react';
import { getZodConstraint, parseWithZod } from '@conform-to/zod/v4';
import type { ReactNode } from 'react';
import { Form } from 'react-router';
import type { z } from 'zod';
import { ErrorList } from './forms';
import { SubmissionKey } from './submission-key';

export function useCreateForm<Schema extends z.ZodObject>(id: string, schema: Schema, lastResult: SubmissionResult<string[]> | undefined, defaultValue?: DefaultValue<z.input<Schema>>) {
  return useForm<z.input<Schema>, z.output<Schema>>({
    id,
    lastResult,
    constraint: getZodConstraint(schema),
    ...(defaultValue ? { defaultValue } : {}),
    shouldValidate: 'onBlur',
    shouldRevalidate: 'onInput',
    onValidate: ({ formData }) => parseWithZod(formData, { schema }),
  });
}

export function CreatePanel<Schema extends Record<string, unknown>>(props: {
  headingId: string;
  heading: string;
  form: FormMetadata<Schema, string[]>;
  submitText: string;
  /** The intent the action reads; a page with several create forms names each. Default `create`. */
  intent?: string;
  children: ReactNode;
}) {
  return (
    <section aria-labelledby={props.headingId} className="panel">
      <h2 id={props.headingId}>{props.heading}</h2>
      <Form method="post" {...getFormProps(props.form)} className="form-grid">
        <SubmissionKey />
        <input type="hidden" name="intent" value={props.intent ?? 'create'} />
        <ErrorList id={props.form.errorId} errors={props.form.errors} />
        {props.children}
        <div className="form-actions">
          <button type="submit" className="button button-primary">
            {props.submitText}
          </button>
        </div>
      </Form>
    </section>
  );
}
