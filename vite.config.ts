import { reactRouter } from '@react-router/dev/vite';
import { defineConfig } from 'vite';

export default defineConfig({
  // Vitest falls back to this file when it has no config of its own; the React Router plugin would then try to
  // compile the whole app for every unit test run, so it is only loaded for real builds.
  plugins: process.env.VITEST ? [] : [reactRouter()],
});
