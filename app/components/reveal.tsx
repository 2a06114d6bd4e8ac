// A secret shown exactly once (a new API key, a generated password): it arrives in the encrypted flash cookie,
// which the root loader consumes, so reloading the page makes it disappear for good.
import { useState } from 'react';

export interface RevealData {
  label: string;
  value: string;
  note?: string;
}

export function OneTimeSecret({ reveal }: { reveal: RevealData | null }) {
  const [copied, setCopied] = useState(false);
  if (!reveal) return null;
  return (
    <section className="reveal" aria-labelledby="reveal-heading">
      <h2 id="reveal-heading">{reveal.label}</h2>
      <p className="reveal-note">{reveal.note ?? 'Copy it now: it is not stored and will not be shown again.'}</p>
      <div className="reveal-value">
        <code data-testid="one-time-secret">{reveal.value}</code>
        <button
          type="button"
          className="button button-secondary"
          onClick={() => {
            void navigator.clipboard?.writeText(reveal.value).then(() => setCopied(true), () => setCopied(false));
          }}
        >
          {copied ? 'Copied' : 'Copy'}
        </button>
      </div>
    </section>
  );
}
