import { redact } from './redact.js';

/** What the app logs through; an InvocationContext satisfies it. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Wraps a logger so nothing credential-shaped reaches a log line, whatever the message carries. */
export function redactingLogger(inner: Logger): Logger {
  return {
    info: (m) => inner.info(redact(m)),
    warn: (m) => inner.warn(redact(m)),
    error: (m) => inner.error(redact(m)),
  };
}
