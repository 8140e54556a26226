import type { TableClient } from '@azure/data-tables';
import type { QueueServiceClient } from '@azure/storage-queue';
import * as z from 'zod';
import { readBudgetUsage, type BudgetUsage, type TenantBudgetUsage } from '../sources/budget-usage.js';
import { deadLetterQueueOf } from '../messages/dead-letter.js';
import { MONITORED_QUEUES, QUEUE_NAMES } from '../storage/queues.js';
import { describeError } from '../telemetry/redact.js';
import type { TenantRegistry } from '../tenants/tenants.js';
import type { TenantStatusStore } from '../tenants/tenant-status.js';

/**
 * What the status page shows, gathered from storage the app already keeps: the tenant registry and
 * each tenant's last poll (`tenant-status.ts`), the shared call budget's counts, the queue depths and
 * the dead letters at the front of `incidents-deadletter`. Nothing secret is read: no credential, no
 * incident content beyond ids.
 */
export interface StatusReport {
  generatedAt: string;
  /** From POLL_SCHEDULE, when it is a plain interval. */
  pollIntervalSeconds?: number;
  tenants: TenantRow[];
  queues: QueueDepth[];
  deadLetters: DeadLetterRow[];
  /** Parts that could not be read, and why (the rest of the page still shows). */
  problems: string[];
}

export interface TenantRow {
  tenantId: string;
  displayName: string;
  context: 'application' | 'partner';
  enabled: boolean;
  lastPollAt?: string;
  lastOutcome?: string;
  lastError?: string;
  lastFailureAt?: string;
  lastFailure?: string;
  /** Now minus the checkpoint (the newest incident change the relay is sure to have), in seconds. */
  lagSeconds?: number;
  /** The lag exceeds three poll intervals beyond the poll's 5-minute overlap. */
  behind: boolean;
  eventsLast24h: number;
  eventsEnqueued: number;
  budget?: BudgetUsage;
}

export interface QueueDepth {
  name: string;
  /** Approximate, as the queue service counts; undefined when it could not be read. */
  messages?: number;
}

export interface DeadLetterRow {
  eventId?: string;
  tenantId?: string;
  reason: string;
  failedAt?: string;
}

export interface StatusDependencies {
  registry: TenantRegistry;
  tenantStatus: TenantStatusStore;
  budgetTable: TableClient;
  queues: QueueServiceClient;
  pollSchedule?: string;
  now?: Date;
}

/** The poll's overlap window (`ingest.ts`): a checkpoint is never newer than now minus this after a poll. */
const OVERLAP_SECONDS = 300;
/** How many dead letters the page lists: one peek, the most the queue service returns at once. */
export const DEAD_LETTERS_SHOWN = 32;
/** A dead letter's reason is written by the app, but its message came from outside: shown shortened. */
const MAX_REASON_CHARS = 300;

export async function gatherStatus(deps: StatusDependencies): Promise<StatusReport> {
  const now = deps.now ?? new Date();
  const problems: string[] = [];
  const attempt = async <T>(what: string, read: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      problems.push(`${what}: ${describeError(err)}`);
      return fallback;
    }
  };
  const [tenants, statuses, budgets, queues, deadLetters] = await Promise.all([
    attempt('tenants', () => deps.registry.list(), []),
    attempt('tenant status', () => deps.tenantStatus.list(now), []),
    attempt(
      'call budget',
      () => readBudgetUsage(deps.budgetTable, now.getTime()),
      new Map<string, TenantBudgetUsage>(),
    ),
    Promise.all(MONITORED_QUEUES.map((name) => queueDepth(deps.queues, name, problems))),
    attempt('dead letters', () => peekDeadLetters(deps.queues), []),
  ]);
  const pollIntervalSeconds = deps.pollSchedule ? pollIntervalOf(deps.pollSchedule) : undefined;
  const statusOf = new Map(statuses.map((s) => [s.tenantId, s]));
  const rows = tenants.map((tenant): TenantRow => {
    const status = statusOf.get(tenant.tenantId);
    const checkpoint = status?.checkpoint ? Date.parse(status.checkpoint) : NaN;
    const lagSeconds = Number.isFinite(checkpoint)
      ? Math.max(0, Math.round((now.getTime() - checkpoint) / 1000))
      : undefined;
    return {
      tenantId: tenant.tenantId,
      displayName: tenant.displayName,
      context: tenant.context,
      enabled: tenant.enabled,
      lastPollAt: status?.lastPollAt,
      lastOutcome: status?.lastOutcome,
      lastError: status?.lastError,
      lastFailureAt: status?.lastFailureAt,
      lastFailure: status?.lastFailure,
      lagSeconds,
      behind:
        tenant.enabled &&
        lagSeconds !== undefined &&
        pollIntervalSeconds !== undefined &&
        lagSeconds > 3 * pollIntervalSeconds + OVERLAP_SECONDS,
      eventsLast24h: status?.eventsLast24h ?? 0,
      eventsEnqueued: status?.eventsEnqueued ?? 0,
      // The budget of the API the tenant is read through.
      budget: budgets.get(tenant.tenantId)?.[tenant.source],
    };
  });
  rows.sort((a, b) => a.displayName.localeCompare(b.displayName) || a.tenantId.localeCompare(b.tenantId));
  return { generatedAt: now.toISOString(), pollIntervalSeconds, tenants: rows, queues, deadLetters, problems };
}

async function queueDepth(queues: QueueServiceClient, name: string, problems: string[]): Promise<QueueDepth> {
  try {
    const properties = await queues.getQueueClient(name).getProperties();
    return { name, messages: properties.approximateMessagesCount ?? 0 };
  } catch (err) {
    // A queue nothing has failed into yet may not exist: it holds nothing.
    if ((err as { statusCode?: number }).statusCode === 404) return { name, messages: 0 };
    problems.push(`queue ${name}: ${describeError(err)}`);
    return { name };
  }
}

/** A dead letter as `dead-letter.ts` writes it; anything else in the queue is shown as unreadable. */
const deadLetterSchema = z.object({
  reason: z.string(),
  failedAt: z.string().optional(),
  message: z.unknown(),
});
const identitySchema = z.object({ eventId: z.string().max(200).optional(), tenantId: z.string().max(64).optional() });

async function peekDeadLetters(queues: QueueServiceClient): Promise<DeadLetterRow[]> {
  const queue = queues.getQueueClient(deadLetterQueueOf(QUEUE_NAMES.incidents));
  let peeked;
  try {
    peeked = await queue.peekMessages({ numberOfMessages: DEAD_LETTERS_SHOWN });
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return [];
    throw err;
  }
  const rows = peeked.peekedMessageItems.map((item): DeadLetterRow => {
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(item.messageText, 'base64').toString('utf8'));
    } catch {
      decoded = undefined;
    }
    const entry = deadLetterSchema.safeParse(decoded);
    if (!entry.success) return { reason: '(not a dead letter the relay wrote)' };
    const identity = identitySchema.safeParse(entry.data.message);
    const reason =
      entry.data.reason.length > MAX_REASON_CHARS
        ? `${entry.data.reason.slice(0, MAX_REASON_CHARS)}…`
        : entry.data.reason;
    return {
      eventId: identity.success ? identity.data.eventId : undefined,
      tenantId: identity.success ? identity.data.tenantId : undefined,
      reason,
      failedAt: entry.data.failedAt,
    };
  });
  // The queue hands out its oldest first; people look for what just happened.
  return rows.sort((a, b) => (b.failedAt ?? '').localeCompare(a.failedAt ?? ''));
}

/**
 * The interval of an NCRONTAB schedule (`{second} {minute} {hour} {day} {month} {day-of-week}`) of the
 * plain kinds: every N seconds, minutes or hours, or once an hour or a day. Anything else: undefined
 * (the page then does not judge lag).
 */
export function pollIntervalOf(schedule: string): number | undefined {
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== 6) return undefined;
  const [second, minute, hour, ...rest] = fields as [string, string, string, string, string, string];
  if (rest.some((f) => f !== '*')) return undefined;
  const every = (field: string) => {
    const m = /^(?:\*|0)\/([1-9]\d*)$/.exec(field);
    return m ? Number(m[1]) : field === '*' ? 1 : undefined;
  };
  const fixed = (field: string) => /^\d+$/.test(field);
  if (!fixed(second)) return minute === '*' && hour === '*' ? every(second) : undefined;
  if (!fixed(minute)) {
    const n = every(minute);
    return n === undefined || hour !== '*' ? undefined : n * 60;
  }
  if (hour === '*') return 3600;
  if (fixed(hour)) return 86_400;
  const n = every(hour);
  return n === undefined ? undefined : n * 3600;
}
