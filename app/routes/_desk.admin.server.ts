// The admin pages' actions (users, API keys): one Zod schema per page, parsed with Conform. A form that does not
// parse, or a change the domain refuses, answers 400 with Conform's reply, keyed by the form's intent and the row
// it acts on so the page shows it beside the right form (the field's errors, or the form's).
import type { SubmissionResult } from '@conform-to/react';
import { parseWithZod } from '@conform-to/zod/v4';
import { data } from 'react-router';
import type { z } from 'zod';
import type { AdminResult } from '../billing/access/desk-users';
import type { PermissionString } from '../billing/access/permissions';
import type { Actor } from '../billing/audit';
import { getServices } from '../server/desk-context';
import { actorOf, requireUserWithPermission } from '../utils/permissions.server';
import { onceForSubmission } from '../utils/submissions.server';

type Context = Parameters<typeof requireUserWithPermission>[1];
type Refuse = ReturnType<typeof parseAdminForm>['refuse'];

/** What an admin action returns when it does not redirect. */
export type AdminActionData = { intent: string; target: string; result: SubmissionResult<string[]> } | undefined;

/** Parses an admin form; `targetField` names the hidden input holding the row it acts on. */
export function parseAdminForm<Schema extends z.ZodType>(formData: FormData, schema: Schema, targetField: string) {
  const submission = parseWithZod(formData, { schema });
  const intent = String(formData.get('intent') ?? '');
  const target = String(formData.get(targetField) ?? '');
  const answer = (result: SubmissionResult<string[]>) => data({ intent, target, result }, { status: 400 });
  return {
    submission,
    /** The form did not parse: its errors, field by field. */
    invalid: () => answer(submission.reply()),
    /** The domain refused the change: the message beside its field, or above the form. */
    refuse: (outcome: Extract<AdminResult<unknown>, { ok: false }>) =>
      answer(submission.reply(outcome.field ? { fieldErrors: { [outcome.field]: [outcome.message] } } : { formErrors: [outcome.message] })),
  };
}

/**
 * An admin page's action: run once per submission (a double click or a resent form, app/utils/submissions.server.ts),
 * for a user holding `permission`, with the form parsed; `change` makes the change and ends in a redirect, or in
 * `refuse(outcome)` when the domain says no.
 */
export function adminAction<Schema extends z.ZodType, Answer>(
  request: Request,
  context: Context,
  permission: PermissionString,
  form: { schema: Schema; targetField: string },
  change: (input: z.output<Schema>, tools: { actor: Actor; pool: ReturnType<typeof getServices>['pool']; refuse: Refuse }) => Promise<Answer>,
) {
  return onceForSubmission(request, context, async () => {
    const user = await requireUserWithPermission(request, context, permission);
    const { submission, invalid, refuse } = parseAdminForm(await request.formData(), form.schema, form.targetField);
    if (submission.status !== 'success') return invalid();
    return change(submission.value, { actor: actorOf(user), pool: getServices(context).pool, refuse });
  });
}
