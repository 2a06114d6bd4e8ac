// Every line is one JSON object with the level's name, the process role, the component, and — inside a request, a
// job or a span — the request id, the job id and task, and the trace and span ids (ADR 019).
import { spawn } from 'node:child_process';
import { trace } from '@opentelemetry/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configureLogging, errorFields, logger, withLogContext } from './log';
import { startTelemetry, type Telemetry } from './server/telemetry';

let telemetry: Telemetry;
let lines: Array<Record<string, unknown>>;
beforeAll(() => {
  telemetry = startTelemetry({ serviceName: 'meterdesk-log-test' });
});
afterAll(() => telemetry.shutdown());
afterEach(() => configureLogging({ role: 'cli' }));

function capture(role: Parameters<typeof configureLogging>[0]['role'], level: 'debug' | 'info' = 'info') {
  lines = [];
  configureLogging({ role, level, destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
}

describe('the logger', () => {
  it('writes the level name, role, component and time on every line, and honours the level', () => {
    capture('worker');
    const log = logger('db');
    log.debug('not at info');
    log.info({ rows: 3 }, 'copied');
    log.warn('slow');
    expect(lines).toEqual([
      expect.objectContaining({ level: 'info', role: 'worker', component: 'db', rows: 3, msg: 'copied', time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) }),
      expect.objectContaining({ level: 'warn', role: 'worker', component: 'db', msg: 'slow' }),
    ]);
    expect(lines[0]).not.toHaveProperty('request_id');
    expect(lines[0]).not.toHaveProperty('trace_id');
  });

  it('adds the request id and the active span to lines logged anywhere inside them, across awaits', async () => {
    capture('web', 'debug');
    const log = logger('api');
    const tracer = trace.getTracer('log-test');
    let expected = { traceId: '', spanId: '' };
    await tracer.startActiveSpan('request', async (span) => {
      expected = span.spanContext();
      await withLogContext({ request_id: 'req-7' }, async () => {
        await new Promise((r) => setTimeout(r, 1));
        log.debug('inside');
      });
      span.end();
    });
    log.info('outside');
    expect(lines[0]).toMatchObject({ msg: 'inside', role: 'web', request_id: 'req-7', trace_id: expected.traceId, span_id: expected.spanId });
    expect(expected.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(lines[1]).toMatchObject({ msg: 'outside' });
    expect(lines[1]).not.toHaveProperty('request_id');
    expect(lines[1]).not.toHaveProperty('trace_id');
  });

  it('serializes errors with their message and stack under err', () => {
    capture('cli');
    logger('x').error(errorFields(new Error('disk full')), 'write failed');
    expect(lines[0]).toMatchObject({ level: 'error', msg: 'write failed', err: { type: 'Error', message: 'disk full', stack: expect.stringContaining('disk full') } });
  });
});

describe('the output format', () => {
  // A real process whose stdout is a pipe (not a TTY): JSON lines, whatever is installed.
  it('is JSON when stdout is not a terminal', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '-e', `import('./app/log.ts').then(({ configureLogging, logger }) => { configureLogging({ role: 'migrate' }); logger('t').info({ n: 1 }, 'hello'); })`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    expect(await new Promise((r) => child.once('exit', r))).toBe(0);
    const parsed = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(parsed).toEqual([expect.objectContaining({ level: 'info', role: 'migrate', component: 't', n: 1, msg: 'hello' })]);
  }, 30_000);

  it('is pino-pretty (readable, not JSON) when asked for, as a terminal gets it', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '-e', `import('./app/log.ts').then(({ configureLogging, logger }) => { configureLogging({ role: 'web', format: 'pretty' }); logger('t').warn({ n: 1 }, 'hello there'); })`],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NO_COLOR: '1' } },
    );
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    expect(await new Promise((r) => child.once('exit', r))).toBe(0);
    expect(() => JSON.parse(out.split('\n')[0]!)).toThrow();
    expect(out).toMatch(/WARN.*hello there/);
    expect(out).toMatch(/role: "web"/);
  }, 30_000);
});
