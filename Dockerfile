# The dex server image. It runs the same build and the same entry command as CI
# and the test suite (`node --import tsx cli/src/dex.ts server`, which is what
# `pnpm dex server` runs), so what CI tests is what ships. It requires API keys
# (tests/e2e/auth.test.ts runs this same command): create one with
# `dex auth create` against the same DEX_DATABASE_URL (README, "Authentication").
FROM node:20-bookworm-slim
RUN npm install -g pnpm@12.4.2
WORKDIR /app
COPY . .
RUN pnpm install --frozen-lockfile
ENV DEX_HOST=0.0.0.0 DEX_PORT=7460
EXPOSE 7460
USER node
CMD ["node", "--import", "tsx", "cli/src/dex.ts", "server"]
