/**
 * The server's optional plain-HTTP ports, started before the gRPC port so that a port already
 * taken fails the start with nothing else listening: the Prometheus endpoint (metrics/http.ts)
 * and the web UI (ui-endpoint.ts). Each is started only when its port is given.
 */
import type { Logger } from "../logger.js";
import type { DexMetrics } from "../metrics/dex-metrics.js";
import { startMetricsEndpoint, type MetricsEndpoint } from "../metrics/http.js";
import type { ConnectHooks, ServedService } from "./connect-services.js";
import { startUiEndpoint, type UiEndpoint } from "./ui-endpoint.js";

export interface HttpEndpoints {
  /** Undefined without a metrics port. */
  readonly metrics: MetricsEndpoint | undefined;
  /** Undefined without a UI port. */
  readonly ui: UiEndpoint | undefined;
  /** Closes both (a scrape or a UI call in flight ends first). */
  close(): Promise<void>;
}

export async function startHttpEndpoints(options: {
  host: string;
  logger: Logger;
  /** Both or neither: the metrics endpoint serves what `metrics` renders. */
  metricsPort: number | undefined;
  metrics: DexMetrics | undefined;
  uiPort: number | undefined;
  /** The dex.v1 services the UI calls over Connect, and the hooks they answer through. */
  services: ServedService[];
  hooks: ConnectHooks;
}): Promise<HttpEndpoints> {
  const { host, logger, metrics } = options;
  let metricsEndpoint: MetricsEndpoint | undefined;
  let ui: UiEndpoint | undefined;
  try {
    if (metrics && options.metricsPort !== undefined) {
      metricsEndpoint = await startMetricsEndpoint({ host, port: options.metricsPort, render: () => metrics.render(), contentType: metrics.contentType, logger });
      logger.info("dex metrics listening", { url: `http://${metricsEndpoint.address}/metrics` });
    }
    if (options.uiPort !== undefined) {
      ui = await startUiEndpoint({ host, port: options.uiPort, services: options.services, hooks: options.hooks, logger });
      logger.info("dex web UI listening", { url: `http://${ui.address}/` });
    }
  } catch (err) {
    await metricsEndpoint?.close();
    throw err;
  }
  return {
    metrics: metricsEndpoint,
    ui,
    close: async () => {
      await Promise.all([metricsEndpoint?.close(), ui?.close()]);
    },
  };
}
