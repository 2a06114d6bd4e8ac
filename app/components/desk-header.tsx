// The desk's header: product name, the navigation the user's role may see, who is signed in, and logging out.
import { Form, Link, useLocation } from 'react-router';
import type { DeskUser } from '../utils/permissions';
import { userHasPermission } from '../utils/permissions';
import { DESK_NAV, isNavItemCurrent } from './desk-nav';

export function DeskHeader({ user, simulatedProcessors }: { user: DeskUser; simulatedProcessors: boolean }) {
  const { pathname } = useLocation();
  const items = DESK_NAV.filter((item) => userHasPermission(user, item.permission));
  return (
    <header className="desk-header">
      <div className="desk-header-bar">
        <Link to="/" className="brand">
          Meterdesk
        </Link>
        <div className="account">
          <p className="account-who">
            <span className="visually-hidden">Signed in as </span>
            <span className="account-email">{user.email}</span> <span className={`badge badge-role-${user.role}`}>{user.role}</span>
          </p>
          <Form method="post" action="/logout" className="account-actions">
            <button type="submit" name="intent" value="logout" className="button button-secondary">
              Log out
            </button>
            <button type="submit" name="intent" value="everywhere" className="button button-quiet">
              Log out everywhere
            </button>
          </Form>
        </div>
      </div>
      <nav aria-label="Desk sections" className="desk-nav">
        <ul>
          {items.map((item) => {
            const current = isNavItemCurrent(item, pathname);
            return (
              <li key={item.to}>
                <Link to={item.to} aria-current={current ? 'page' : undefined} className={current ? 'current' : undefined}>
                  {item.label}
                </Link>
              </li>
            );
          })}
        </ul>
      </nav>
      {simulatedProcessors ? (
        <p className="banner-simulated" role="note">
          <strong>Simulated processors.</strong> Stripe and Braintree calls go to the built-in simulators: no real
          customer is charged.
        </p>
      ) : null}
    </header>
  );
}
