// The deployment files (ADR 021) checked where Docker is not available: the Dockerfile and compose.yaml are parsed,
// and the exact entry commands they run (ENTRYPOINT + each service's command, with the service's environment) are
// run here against a real PostgreSQL: `migrate` on an empty database exits 0, `web` and `worker` come up and pass
// the very healthcheck compose gives them, and each stops cleanly (exit 0) on SIGTERM.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { ENV_VARIABLES } from '../../app/env';
import { adminQuery, databaseUrl } from '../support/database';
import { ensureFreshBuild } from '../support/desk-build';
import { freePort } from '../support/free-port';
import { startedUrl } from '../support/process-output';

const run = promisify(execFile);

interface Stage {
  from: string;
  name: string | null;
  lines: Array<{ instruction: string; args: string }>;
}

/** Dockerfile stages with their instructions (continuation lines joined, comments dropped, ARG defaults applied). */
function parseDockerfile(text: string): { stages: Stage[]; args: Record<string, string> } {
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  const joined = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const line of joined) {
    const [instruction, ...rest] = line.split(/\s+/);
    const argsText = rest.join(' ');
    const upper = instruction!.toUpperCase();
    if (upper === 'ARG' && stages.length === 0) {
      const [k, v] = argsText.split('=');
      args[k!] = v ?? '';
    } else if (upper === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(argsText)!;
      stages.push({ from: m[1]!.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? ''), name: m[2] ?? null, lines: [] });
    } else {
      stages.at(-1)!.lines.push({ instruction: upper, args: argsText });
    }
  }
  return { stages, args };
}

const dockerfile = parseDockerfile(readFileSync('Dockerfile', 'utf8'));
const runtime = dockerfile.stages.at(-1)!;
const instruction = (stage: Stage, name: string) => stage.lines.filter((l) => l.instruction === name).map((l) => l.args);
const jsonArray = (text: string) => JSON.parse(text) as string[];
const entrypoint = jsonArray(instruction(runtime, 'ENTRYPOINT').at(-1)!);
const cmd = jsonArray(instruction(runtime, 'CMD').at(-1)!);
const imageEnv = Object.fromEntries(
  instruction(runtime, 'ENV')
    .join(' ')
    .split(/\s+/)
    .filter(Boolean)
    .map((kv) => kv.split('=') as [string, string]),
);

const compose = parse(readFileSync('compose.yaml', 'utf8'), { merge: true }) as {
  services: Record<string, Record<string, unknown> & { command?: string[]; environment?: Record<string, string>; profiles?: string[] }>;
};
const APP_COMMANDS = ['web', 'worker', 'migrate'] as const;
const appServices = Object.entries(compose.services).filter(([, s]) => (s.build as { context?: string } | undefined)?.context === '.');

/** compose's `${VAR:-default}` / `${VAR:?message}` with the given values (or the default). */
function interpolate(value: string, values: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_, name: string, op: string | undefined, rest: string) => {
    if (values[name] !== undefined) return values[name]!;
    if (op === '-') return rest;
    throw new Error(`${name} must be set (${rest})`);
  });
}

describe('the Dockerfile', () => {
  it('builds in one stage and runs production dependencies on node 24 slim as a non-root user', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    expect(runtime.from).toBe('node:24-slim');
    const build = dockerfile.stages.find((s) => s.name === 'build')!;
    expect(build.from).toBe('node:24-slim');
    expect(instruction(build, 'RUN')).toContain('npm run build');
    expect(JSON.parse(readFileSync('package.json', 'utf8')).scripts.build).toBe('react-router build');
    expect(instruction(runtime, 'RUN').some((r) => r.startsWith('npm ci --omit=dev'))).toBe(true);
    expect(instruction(runtime, 'USER')).toEqual(['node']);
    expect(instruction(runtime, 'COPY')).toEqual(expect.arrayContaining(['--from=build /app/build ./build', '--from=build /app/app/generated ./app/generated']));
    // Everything the runtime stage copies from the context exists (a renamed directory would break the image).
    for (const copy of instruction(runtime, 'COPY').filter((c) => !c.startsWith('--from'))) {
      for (const source of copy.split(/\s+/).slice(0, -1)) expect(existsSync(source), source).toBe(true);
    }
    // What `migrate` runs at run time is a production dependency, not a devDependency left out by --omit=dev.
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    for (const name of ['tsx', 'prisma', '@prisma/client', 'pino']) expect(pkg.dependencies[name], name).toBeDefined();
  });

  it('has one entry point whose command selects web, worker or migrate, and a healthcheck on /readyz', () => {
    expect(entrypoint).toEqual(['node', '--import', 'tsx', 'app/cli/main.ts']);
    expect(existsSync(entrypoint.at(-1)!)).toBe(true);
    expect(cmd).toEqual(['web']);
    const main = readFileSync('app/cli/main.ts', 'utf8');
    for (const command of APP_COMMANDS) expect(main).toContain(`case '${command}':`);
    const healthcheck = instruction(runtime, 'HEALTHCHECK').join(' ');
    expect(healthcheck).toContain('CMD ["node", "scripts/readyz.mjs", "http://127.0.0.1:3000/readyz"]');
    expect(imageEnv).toMatchObject({ NODE_ENV: 'production', PORT: '3000', HEALTH_PORT: '9464', HOST: '0.0.0.0' });
    for (const name of Object.keys(imageEnv).filter((k) => k !== 'CHECKPOINT_DISABLE')) expect(ENV_VARIABLES).toContain(name);
    const ignored = readFileSync('.dockerignore', 'utf8').split('\n');
    for (const path of ['node_modules', 'build', 'app/generated', '.data', '.env', '.git']) expect(ignored).toContain(path);
  });
});

describe('compose.yaml', () => {
  it('runs PostgreSQL, migrate once, two web and two worker processes of the one image, and an optional collector', () => {
    const byCommand = (c: string) => appServices.filter(([, s]) => s.command?.[0] === c).map(([name]) => name);
    expect(byCommand('migrate')).toEqual(['migrate']);
    expect(byCommand('web')).toEqual(['web-1', 'web-2']);
    expect(byCommand('worker')).toEqual(['worker-1', 'worker-2']);
    expect(appServices).toHaveLength(5);
    for (const [name, service] of appServices) {
      expect(service.command, name).toHaveLength(1);
      expect(APP_COMMANDS, name).toContain(service.command![0]);
      expect((service.build as { dockerfile: string }).dockerfile, name).toBe('Dockerfile');
      // Every variable given to the processes is one app/env.ts reads (a misspelt name would be silently ignored).
      for (const key of Object.keys(service.environment ?? {})) expect(ENV_VARIABLES, `${name}: ${key}`).toContain(key);
      expect(service.environment?.MIGRATE_ON_START, name).toBe('false');
    }
    expect((compose.services.postgres!.image as string).startsWith('postgres:')).toBe(true);
    expect(compose.services.migrate!.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(compose.services.migrate!.healthcheck).toEqual({ disable: true });
    for (const name of ['web-1', 'web-2', 'worker-1', 'worker-2']) {
      expect(compose.services[name]!.depends_on, name).toEqual({ migrate: { condition: 'service_completed_successfully' } });
      // Docker's SIGKILL comes after the drain (delay + grace) has had its time.
      const grace = Number(String(compose.services[name]!.stop_grace_period).replace(/s$/, '')) * 1000;
      expect(grace, name).toBeGreaterThan(Number(interpolate(compose.services[name]!.environment!.DRAIN_DELAY_MS!, {})) + Number(interpolate(compose.services[name]!.environment!.SHUTDOWN_GRACE_MS!, {})));
    }
    const collector = compose.services['otel-collector']!;
    expect(collector.profiles).toEqual(['otel']);
    const mounted = (collector.volumes as string[])[0]!.split(':')[0]!;
    expect(existsSync(mounted)).toBe(true);
  });

  it('gives web and worker a healthcheck on the /readyz of the port each listens on', () => {
    for (const [name, service] of appServices) {
      const test = (service.healthcheck as { test?: string[] }).test;
      if (service.command![0] === 'migrate') {
        expect(test, name).toBeUndefined();
        continue;
      }
      const port = service.command![0] === 'web' ? imageEnv.PORT : imageEnv.HEALTH_PORT;
      expect(test, name).toEqual(['CMD', 'node', 'scripts/readyz.mjs', `http://127.0.0.1:${port}/readyz`]);
      expect(existsSync(test![2]!)).toBe(true);
    }
  });
});

describe('the entry commands, run as the image runs them', () => {
  const adminUrl = () => inject('databaseAdminUrl');
  const name = `meterdesk_test_deploy_${randomBytes(4).toString('hex')}`;
  beforeAll(async () => {
    // An empty database, as compose's PostgreSQL starts: `migrate` makes it.
    await adminQuery(adminUrl(), `CREATE DATABASE "${name}"`);
    // The image serves the production build; so does this web process.
    await ensureFreshBuild();
  }, 300_000);
  afterAll(() => adminQuery(adminUrl(), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));

  /** A compose service's command line and environment (image ENV, then the service's), for this machine's loopback. */
  const commandOf = (service: string, overrides: Record<string, string>) => {
    const s = compose.services[service]!;
    const environment = Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v), { SESSION_SECRET: 'd'.repeat(40) })]));
    const [bin, ...args] = [...entrypoint, ...s.command!];
    expect(bin).toBe('node');
    return { args, env: { ...process.env, ...imageEnv, ...environment, DATABASE_URL: databaseUrl(adminUrl(), name), HOST: '127.0.0.1', ...overrides } };
  };
  const healthcheckOf = (service: string, port: number) => {
    const test = (compose.services[service]!.healthcheck as { test: string[] }).test;
    const [, bin, ...args] = test;
    expect(bin).toBe('node');
    return args.map((a) => a.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${port}`));
  };

  it('migrate exits 0; web and worker pass their healthchecks, serve, and exit 0 on SIGTERM', async () => {
    const migrate = commandOf('migrate', {});
    const migrated = await run(process.execPath, migrate.args, { env: migrate.env, timeout: 180_000 });
    expect(migrated.stdout).toMatch(/"role":"migrate".*"msg":"database is up to date"/);

    const webPort = await freePort();
    const workerPort = await freePort();
    const processes = [
      { service: 'web-1', port: webPort, spec: commandOf('web-1', { PORT: String(webPort), DRAIN_DELAY_MS: '200' }) },
      { service: 'worker-1', port: workerPort, spec: commandOf('worker-1', { HEALTH_PORT: String(workerPort), PORT: '0' }) },
    ].map(({ service, port, spec }) => {
      const child = spawn(process.execPath, spec.args, { env: spec.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      return { service, port, child, exited, output: () => output };
    });
    try {
      for (const p of processes) {
        const check = healthcheckOf(p.service, p.port);
        const deadline = Date.now() + 90_000;
        // As Docker does: the healthcheck command, again and again, until it exits 0.
        for (;;) {
          const ok = await run(process.execPath, check, { timeout: 10_000 }).then(() => true, () => false);
          if (ok) break;
          if (Date.now() > deadline || p.child.exitCode !== null) throw new Error(`${p.service} never became healthy:\n${p.output()}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      const [web, worker] = processes;
      expect(startedUrl(web!.output())).toBe(`http://127.0.0.1:${webPort}`);
      expect(startedUrl(worker!.output(), 'health_url')).toBe(`http://127.0.0.1:${workerPort}`);
      // The production build is served (the desk's sign-in page), and the API answers.
      const login = await fetch(`http://127.0.0.1:${webPort}/login`);
      expect(login.status).toBe(200);
      expect(await login.text()).toContain('<html');
      expect((await fetch(`http://127.0.0.1:${webPort}/api/v1/events`)).status).toBe(401);
    } finally {
      for (const p of processes) p.child.kill('SIGTERM');
    }
    for (const p of processes) {
      expect(await p.exited, p.output()).toBe(0);
      expect(p.output()).toContain('"msg":"stopped"');
      // Logs only on stdout: every line is JSON (the banner is the embedded default's alone).
      for (const line of p.output().trim().split('\n')) expect(() => JSON.parse(line), line).not.toThrow();
    }
  }, 300_000);
});
