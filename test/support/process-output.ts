// Reading what the long-lived processes say on stdout: JSON log lines (ADR 019), one of them `started` with the URL
// a web process listens on (a worker with HEALTH_PORT names its health_url instead).
export interface LogLine {
  level: string;
  msg: string;
  role?: string;
  [field: string]: unknown;
}

/** Every complete JSON log line in `output` (other lines, e.g. the embedded default's banner, are skipped). */
export function logLines(output: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const raw of output.split('\n')) {
    if (!raw.startsWith('{')) continue;
    try {
      const parsed = JSON.parse(raw) as LogLine;
      if (typeof parsed.msg === 'string') lines.push(parsed);
    } catch {
      // a line still being written
    }
  }
  return lines;
}

/** The `started` line's URL (`url`, or `health_url` for a worker), as 127.0.0.1; null until it is logged. */
export function startedUrl(output: string, field: 'url' | 'health_url' = 'url'): string | null {
  const started = logLines(output).find((l) => l.msg === 'started' && typeof l[field] === 'string');
  return started ? (started[field] as string).replace('localhost', '127.0.0.1') : null;
}
