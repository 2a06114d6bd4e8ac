// The containers' healthcheck (node:24-slim has no curl): exits 0 when the URL, a /readyz, answers 200 within 3 s,
// else 1. Usage: node scripts/readyz.mjs http://127.0.0.1:3000/readyz
const url = process.argv[2];
if (!url) {
  console.error('usage: node scripts/readyz.mjs <url>');
  process.exit(2);
}
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  await res.arrayBuffer();
  process.exit(res.status === 200 ? 0 : 1);
} catch {
  process.exit(1);
}
