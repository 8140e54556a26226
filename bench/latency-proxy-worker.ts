import { parentPort, workerData } from 'node:worker_threads';
import { startLatencyProxy } from './latency-proxy.js';

/**
 * A latency proxy in a thread of its own (bench/latency-proxy.ts `startLatencyProxyThread`): its
 * timers fire on time whatever the benchmark's own thread is computing, as a network's delay does.
 */
const { targetPort, oneWayMs, targetHost } = workerData as { targetPort: number; oneWayMs: number; targetHost: string };
const proxy = await startLatencyProxy(targetPort, oneWayMs, targetHost);
parentPort!.postMessage({ port: proxy.port });
parentPort!.once('message', () => void proxy.close().then(() => parentPort!.postMessage({ closed: true })));
