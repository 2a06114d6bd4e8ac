// Hooks over the root and desk-layout loaders' data, for any page to use.
import { useRouteLoaderData } from 'react-router';
import type { loader as rootLoader } from '../root';
import type { ToastData } from '../components/toast';
import type { RevealData } from '../components/reveal';
import type { DeskUser } from './permissions';

/** This request's flash: the toast and the one-time secret, if an action just set them. */
export function useFlash(): { toast: ToastData | null; reveal: RevealData | null } {
  const data = useRouteLoaderData<typeof rootLoader>('root');
  // The loader's own objects, not copies: their identity changes exactly when a new flash arrives.
  return { toast: data?.toast ?? null, reveal: data?.reveal ?? null };
}

/** This page load's submission nonce (components/submission-key.tsx). */
export function useSubmissionNonce(): string | null {
  return useRouteLoaderData<typeof rootLoader>('root')?.submissionNonce ?? null;
}

/** The signed-in user on any page inside the desk layout (throws elsewhere: a bug, not a state). */
export function useDeskUser(): DeskUser {
  const user = useOptionalDeskUser();
  if (!user) throw new Error('useDeskUser() is only available on pages inside the desk layout (routes/_desk).');
  return user;
}

/** What routes/_desk's loader returns that pages read (named here, not imported: the layout imports these hooks). */
interface DeskLayoutData {
  user: DeskUser;
}

export function useOptionalDeskUser(): DeskUser | null {
  return useRouteLoaderData<DeskLayoutData>('routes/_desk')?.user ?? null;
}
