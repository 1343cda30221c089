# The dex server image: compiled JavaScript and production dependencies only.
#
#   docker build -t dex .
#   docker run --rm dex migrate                      # with DEX_DATABASE_URL set
#   docker run --rm -p 7460:7460 -e DEX_DATABASE_URL=... dex          # `dex server`
#
# The build stage installs the workspace (`pnpm install` runs `tsc -b`, the same
# build CI and the tests use) and `pnpm deploy`s @dex/cli with its production
# dependencies into /out. The runtime stage copies /out and nothing else: no
# pnpm, no TypeScript or tsx, no buf, no embedded Postgres (an optional
# dependency that only `dex dev` uses), no tests, bench or chaos code.
# scripts/image/ci.sh builds and runs this file in CI.

FROM node:20-bookworm-slim AS build
# tini: the runtime stage's PID 1 (forwards SIGTERM to node, reaps orphaned processes).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
RUN npm install -g pnpm@12.4.2
WORKDIR /src
# Dependencies first, from the lockfile alone, so a source change reuses this layer.
COPY pnpm-lock.yaml pnpm-workspace.yaml ./
COPY patches patches
RUN pnpm fetch
COPY . .
RUN pnpm install --frozen-lockfile --offline
RUN pnpm deploy --filter @dex/cli --prod --no-optional --offline /out
# What a running server never reads: TypeScript sources (the packages ship them
# for the "dex-source" condition of the tests), declarations, source maps,
# build info, and the deploy's own lockfile and workspace file.
RUN cd /out \
 && rm -rf src pnpm-lock.yaml pnpm-workspace.yaml \
 && find -L node_modules/@dex -mindepth 2 -maxdepth 2 -name src -type d -prune -exec rm -rf {} + \
 && find . \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '.tsbuildinfo' \) -type f -delete \
 && node bin/dex.js --help >/dev/null

FROM node:20-bookworm-slim
COPY --from=build /usr/bin/tini /usr/bin/tini
COPY --from=build /out /app
RUN ln -s /app/bin/dex.js /usr/local/bin/dex
# The server listens on every interface of the container; 7460 is dex's port.
ENV NODE_ENV=production DEX_HOST=0.0.0.0 DEX_PORT=7460
EXPOSE 7460
# Files stay root's and read-only to the server, so `--read-only` works: dex
# writes nothing to disk (its state is in Postgres).
USER 1000:1000
WORKDIR /app
# grpc.health.v1 over the loopback (open without an API key): exit 0 only when SERVING, which
# needs the database too. Shell form, so a DEX_PORT set at run time is the port checked.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD dex health --address "127.0.0.1:${DEX_PORT:-7460}" --timeout-ms 4000
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/bin/dex.js"]
CMD ["server"]
