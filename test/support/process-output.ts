// Reading what the long-lived processes say on stdout: JSON log lines (ADR 019), one of them `started` with the URL
// a web process listens on (a worker with HEALTH_PORT names its health_url instead).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

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

export interface CliProcess {
  child: ChildProcess;
  /** From the `started` line: the web URL, or a worker's health URL. */
  url: string;
  /** Everything it wrote on stdout and stderr so far. */
  output(): string;
  /** Its exit code (null after a signal it did not handle). */
  exited: Promise<number | null>;
  /** Sends the signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * `node --import tsx app/cli/main.ts <command>`, exactly as the Dockerfile's entry point runs it, resolved when its
 * `started` line names a URL (`url` for web, `health_url` for a worker with HEALTH_PORT).
 */
export function startCli(command: string, env: Record<string, string>, options: { field?: 'url' | 'health_url'; timeoutMs?: number } = {}): Promise<CliProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', command], {
    env: { ...process.env, NODE_ENV: 'production', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not start:\n${out}`)), options.timeoutMs ?? 90_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const url = startedUrl(out, options.field ?? 'url');
      if (url) {
        clearTimeout(timer);
        resolve({
          child,
          url,
          output: () => out,
          exited,
          stop: (signal = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited (${code}) before it started:\n${out}`));
    });
  });
}

/**
 * A `web` process as a rolling restart runs it behind the round-robin proxy (test/ops/rolling-restart.test.ts,
 * bench/rolling-restart.ts): migrations left to `migrate`, one API key and one session secret shared by every process.
 */
export function startWebBehindProxy(o: { connectionString: string; port: number; apiKey: string; sessionSecret: string }): Promise<CliProcess> {
  return startCli('web', {
    DATABASE_URL: o.connectionString,
    PORT: String(o.port),
    MIGRATE_ON_START: 'false',
    METERDESK_BOOTSTRAP_API_KEY: o.apiKey,
    SESSION_SECRET: o.sessionSecret,
    // Long enough for the proxy (probing every 100 ms) to route away before the listener closes.
    DRAIN_DELAY_MS: '1000',
  });
}

/** Resolves with the first line of the child's stdout that matches; rejects with what it said if it exits first. */
export function waitForLine(child: ChildProcess, pattern: RegExp, what: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${output}`)), timeoutMs);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      output += `${line}\n`;
      if (pattern.test(line)) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready:\n${output.slice(-2000)}`));
    });
  });
}

/** For a child process the tests start: on SIGTERM or SIGINT, run `stop` once, then exit 0. */
export function stopOnSignal(stop: () => Promise<void>): void {
  const once = () => void stop().then(() => process.exit(0));
  process.once('SIGTERM', once);
  process.once('SIGINT', once);
}
