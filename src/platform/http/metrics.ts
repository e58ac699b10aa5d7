import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The process's Prometheus metrics. One instance per app; nothing global. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'berth_http_requests_total',
    help: 'HTTP requests served, by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'berth_http_request_duration_seconds',
    help: 'HTTP request latency, by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly bytesReceived = new Counter({
    name: 'berth_registry_bytes_received_total',
    help: 'Blob and manifest bytes received from clients.',
    registers: [this.registry],
  });
  readonly bytesSent = new Counter({
    name: 'berth_registry_bytes_sent_total',
    help: 'Blob and manifest bytes sent to clients.',
    registers: [this.registry],
  });
  readonly uploadsInProgress = new Gauge({
    name: 'berth_uploads_in_progress',
    help: 'Blob uploads whose bytes are streaming in right now.',
    registers: [this.registry],
  });

  constructor(options: { collectProcessMetrics: boolean }) {
    if (options.collectProcessMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'berth_' });
  }
}
