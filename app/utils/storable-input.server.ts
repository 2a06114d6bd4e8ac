// PostgreSQL text and jsonb cannot hold U+0000: a NUL in any value that reaches a query fails the query, and the
// desk would answer with a 500. No desk field has a use for it, so the root middleware refuses a request carrying
// one (in its path, query string or form fields) with a 400 before any loader or action runs: one rule that no
// route's schema can forget. (Lone surrogates cannot arrive this way: URL and form decoding yields U+FFFD.)
import { data, type MiddlewareFunction } from 'react-router';
import { isStorableText } from '../billing/validation';

const FORM_TYPES = /^\s*(application\/x-www-form-urlencoded|multipart\/form-data)\b/i;

export async function hasUnstorableInput(request: Request): Promise<boolean> {
  const url = new URL(request.url);
  let path = url.pathname;
  try {
    path = decodeURIComponent(path);
  } catch {
    // A malformed escape is React Router's to answer (a 400); it carries no NUL once decoded either way.
  }
  if (!isStorableText(path)) return true;
  for (const [key, value] of url.searchParams) if (!isStorableText(key) || !isStorableText(value)) return true;
  if (request.method === 'GET' || request.method === 'HEAD' || !FORM_TYPES.test(request.headers.get('content-type') ?? '')) return false;
  let form: FormData;
  try {
    form = await request.clone().formData();
  } catch {
    return false; // a body that is not a form: the action's own parsing refuses it
  }
  for (const [key, value] of form) {
    // Files are bytes, not text: a route that wants text refuses them in its schema.
    if (!isStorableText(key) || (typeof value === 'string' && !isStorableText(value))) return true;
  }
  return false;
}

export const storableInputMiddleware: MiddlewareFunction<Response> = async ({ request }, next) => {
  if (await hasUnstorableInput(request)) {
    throw data({ message: 'The request contains a NUL character (U+0000), which no field of the desk accepts.' }, { status: 400, statusText: 'Bad request' });
  }
  return next();
};
