import { stateWords, TONE_WORDS, type StateKind, type Tone } from '../billing/states';

/** A shape per tone beside the words, so the badge reads without colour (and in a greyscale print). */
const ICONS: Record<Tone, string> = {
  ok: '●',
  waiting: '◔',
  attention: '▲',
  failed: '✕',
  done: '✓',
};

/** A state in words, with its tone as colour, icon and (for screen readers) words; the meaning on hover. */
export function StateBadge({ kind, state }: { kind: StateKind; state: string }) {
  const words = stateWords(kind, state);
  return (
    <span className={`badge badge-tone-${words.tone}`} title={words.meaning} data-state={state} data-tone={words.tone}>
      <span aria-hidden="true" className="badge-icon">
        {ICONS[words.tone]}
      </span>
      {words.label}
      <span className="visually-hidden"> ({TONE_WORDS[words.tone].toLowerCase()})</span>
    </span>
  );
}
