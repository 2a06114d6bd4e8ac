import { useId } from 'react';
import { useSubmissionNonce } from '../utils/root-data';

/**
 * The key that makes a form's submission run once (app/utils/submissions.server.ts): the root loader's nonce (new on
 * every page load and after every action) with this form's place on the page, the same on the server and after
 * hydration.
 */
export function SubmissionKey() {
  const nonce = useSubmissionNonce();
  const id = useId().replace(/[^A-Za-z0-9]/g, '');
  return nonce ? <input type="hidden" name="submission" value={`${nonce}.${id}`} /> : null;
}
