# syntax=docker/dockerfile:1
# One image for every Meterdesk process (ADR 021): the command selects `web`, `worker` or `migrate`
# (`docker run IMAGE worker`); compose.yaml runs them side by side. The web build comes from `react-router build`;
# the runtime stage holds production dependencies only and runs as the unprivileged `node` user.
ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV CHECKPOINT_DISABLE=1
# Dependencies first (a layer that changes only with the lockfile); postinstall generates the Prisma client.
COPY package.json package-lock.json prisma.config.ts ./
COPY prisma ./prisma
RUN npm ci
COPY . .
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    CHECKPOINT_DISABLE=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    HEALTH_PORT=9464
COPY package.json package-lock.json ./
# No install scripts: the Prisma client is generated in the build stage, and nothing here needs a native build.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY app ./app
COPY jobs ./jobs
COPY simulators ./simulators
COPY prisma ./prisma
COPY prisma.config.ts tsconfig.json ./
COPY scripts/readyz.mjs ./scripts/readyz.mjs
COPY --from=build /app/app/generated ./app/generated
COPY --from=build /app/build ./build
USER node
# 3000: desk, API, webhooks and probes of a web process; 9464: probes and /metrics of a worker.
EXPOSE 3000 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "scripts/readyz.mjs", "http://127.0.0.1:3000/readyz"]
# The process gets SIGTERM itself (exec form, no shell in between) and drains (ADR 020).
ENTRYPOINT ["node", "--import", "tsx", "app/cli/main.ts"]
CMD ["web"]
