// Switches between the two admin pages (users, API keys).
import { NavLink } from 'react-router';

export function AdminTabs() {
  return (
    <nav aria-label="Admin pages" className="tabs">
      <NavLink to="/admin/users" end>
        Users
      </NavLink>
      <NavLink to="/admin/api-keys" end>
        API keys
      </NavLink>
    </nav>
  );
}
