// The flash toast set by redirectWithToast(): rendered on the server (visible without JavaScript), dismissible
// once hydrated. Errors are announced assertively, everything else politely.
import { useState } from 'react';

export interface ToastData {
  type: 'success' | 'error' | 'info';
  title: string;
  description?: string;
}

export function ToastMessage({ toast }: { toast: ToastData | null }) {
  // Compared by identity: the next action's toast is a new object and shows even if this one was dismissed.
  const [dismissed, setDismissed] = useState<ToastData | null>(null);
  if (!toast || dismissed === toast) return null;
  return (
    <div className={`toast toast-${toast.type}`} role={toast.type === 'error' ? 'alert' : 'status'}>
      <div>
        <p className="toast-title">{toast.title}</p>
        {toast.description ? <p className="toast-description">{toast.description}</p> : null}
      </div>
      <button type="button" className="button button-quiet" onClick={() => setDismissed(toast)} aria-label="Dismiss message">
        ×
      </button>
    </div>
  );
}
