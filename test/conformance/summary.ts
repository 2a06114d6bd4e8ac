// The summary table at the top of docs/conformance.md: one row per processor, checked by each processor's
// conformance test against the counts of its own (generated) section.
export interface SummaryCounts {
  cases: number;
  inScope: number;
  pass: number;
  departs: number;
  outOfScope: number;
}

/** The summary row whose first cell starts with `processor` (e.g. 'Stripe'), or undefined. */
export function summaryRow(doc: string, processor: string): SummaryCounts | undefined {
  const line = doc.split('\n').find((l) => l.startsWith(`| ${processor} `));
  if (!line) return undefined;
  const n = line.split('|').slice(2, 7).map((c) => Number(c.trim()));
  if (n.length !== 5 || n.some((x) => !Number.isInteger(x))) return undefined;
  const [cases, inScope, pass, departs, outOfScope] = n as [number, number, number, number, number];
  return { cases, inScope, pass, departs, outOfScope };
}
