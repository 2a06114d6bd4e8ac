// The desk's layout: header (nav filtered by role, the signed-in user, logout), the simulated-processors banner,
// the flash toast and one-time secret, then the page. Every page of the desk is a child of this route.
import { Outlet } from 'react-router';
import type { Route } from './+types/_desk';
import { DeskHeader } from '../components/desk-header';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { OneTimeSecret } from '../components/reveal';
import { ToastMessage } from '../components/toast';
import { getDesk } from '../server/desk-context';
import { requireUser } from '../utils/permissions.server';
import { useFlash } from '../utils/root-data';

export async function loader({ request, context }: Route.LoaderArgs) {
  const user = await requireUser(request, context);
  return {
    user: { id: user.id, email: user.email, name: user.name, role: user.role, permissions: user.permissions },
    simulatedProcessors: getDesk(context).simulatedProcessors,
  };
}

export default function DeskLayout({ loaderData }: Route.ComponentProps) {
  const { toast, reveal } = useFlash();
  return (
    <div className="desk">
      <a href="#main" className="skip-link">
        Skip to content
      </a>
      <DeskHeader user={loaderData.user} simulatedProcessors={loaderData.simulatedProcessors} />
      <main id="main" tabIndex={-1} className="desk-main">
        <ToastMessage toast={toast} />
        <OneTimeSecret reveal={reveal} />
        <Outlet />
      </main>
    </div>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return (
    <main id="main" className="desk-main">
      <GeneralErrorBoundary error={error} />
      <p>
        <a href="/">Back to the desk</a>
      </p>
    </main>
  );
}
