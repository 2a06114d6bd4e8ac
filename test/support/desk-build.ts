// The desk tests run the real `react-router build` output. This rebuilds it when any source it bundles is newer
// than build/server/index.js (a build takes ~2 s), under a lock so parallel test files build once. Every test that
// reads build/ should call it, so none reads a build another is rewriting.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const serverEntry = path.join(root, 'build', 'server', 'index.js');
const lockDir = path.join(root, 'build', '.desk-test-build.lock');
const generated = path.join(root, 'app', 'generated');
const STALE_LOCK_MS = 120_000;

export const SERVER_BUILD = serverEntry;

export async function ensureFreshBuild(): Promise<void> {
  for (;;) {
    if (!(await isStale())) return;
    await fs.mkdir(path.dirname(lockDir), { recursive: true });
    try {
      await fs.mkdir(lockDir);
    } catch {
      // Someone else is building; a lock left by a killed run is taken over after a while.
      const info = await fs.stat(lockDir).catch(() => null);
      if (info && Date.now() - info.mtimeMs > STALE_LOCK_MS) await fs.rm(lockDir, { recursive: true, force: true });
      await new Promise((resolve) => setTimeout(resolve, 250));
      continue;
    }
    try {
      if (await isStale()) {
        await promisify(execFile)(path.join(root, 'node_modules', '.bin', 'react-router'), ['build'], {
          cwd: root,
          timeout: 120_000,
          // vite.config.ts leaves the React Router plugin out under vitest (VITEST set), so build without it.
          env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST'))), NODE_ENV: 'production' },
        });
      }
      return;
    } finally {
      await fs.rm(lockDir, { recursive: true, force: true });
    }
  }
}

async function isStale(): Promise<boolean> {
  const built = await fs.stat(serverEntry).then((s) => s.mtimeMs, () => 0);
  if (built === 0) return true;
  const inputs = [path.join(root, 'react-router.config.ts'), path.join(root, 'vite.config.ts')];
  for (const entry of await fs.readdir(path.join(root, 'app'), { recursive: true, withFileTypes: true })) {
    // The generated Prisma client is rewritten (same content) by every `prisma generate`; the desk imports only
    // its types, so it never makes the build stale.
    if (entry.parentPath.startsWith(generated)) continue;
    if (entry.isFile() && /\.(tsx?|css)$/.test(entry.name)) inputs.push(path.join(entry.parentPath, entry.name));
  }
  for (const file of inputs) {
    const mtime = await fs.stat(file).then((s) => s.mtimeMs, () => 0);
    if (mtime > built) return true;
  }
  return false;
}
