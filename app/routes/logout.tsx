// POST /logout ends this session; with intent=everywhere, every session of the user (audited). GET only redirects:
// logging out must never be a link an image tag could trigger.
import { redirect } from 'react-router';
import type { Route } from './+types/logout';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { logOut } from '../utils/logout.server';
import { clearSessionCookie } from '../utils/session.server';

export async function loader() {
  return redirect('/');
}

export async function action({ request, context }: Route.ActionArgs) {
  const form = await request.formData();
  const everywhere = form.get('intent') === 'everywhere';
  const ended = await logOut(request, context, getServices(context).pool, { everywhere });
  return redirectWithToast(
    '/login',
    context,
    everywhere
      ? { type: 'info', title: 'Logged out everywhere', description: `${ended} session${ended === 1 ? '' : 's'} ended.` }
      : { type: 'info', title: 'Logged out' },
    { headers: { 'set-cookie': clearSessionCookie(context) } },
  );
}
