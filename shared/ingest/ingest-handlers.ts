import { countIfPoisoned, deadLetter } from '../messages/dead-letter.js';
import { failureCategory, isRetryable } from '../errors.js';
import { pollRequest, pollRequestSchema, pollTenant, schedulePolls, type PollOutcome } from './ingest.js';
import { redactingLogger, type Logger } from '../telemetry/logging.js';
import { recordCheckpointLag, recordPollRun, type PollRunOutcome } from '../telemetry/metrics.js';
import { QUEUE_NAMES } from '../storage/queues.js';
import { describeError } from '../telemetry/redact.js';
import type { Services } from '../services.js';
import { FAILED_POLL_OUTCOME } from '../telemetry/telemetry-names.js';
import { TenantNotFoundError } from '../tenants/tenants.js';
import { describeOutcome, tracePollRun } from '../telemetry/tracing.js';

/** Timer: one poll request per enabled tenant. */
export async function handlePollSchedule(services: Services, log: Logger): Promise<string[]> {
  const tenants = await schedulePolls(services);
  redactingLogger(log).info(`pollSchedule: poll requested for ${tenants.length} tenant(s)`);
  return tenants;
}

/** HTTP: a poll of one tenant now. */
export async function requestPoll(tenantId: string, services: Services): Promise<void> {
  await services.registry.get(tenantId);
  await services.sender.send(QUEUE_NAMES.pollRequests, pollRequest(tenantId, 'manual'));
}

/**
 * Queue: polls one tenant. A retryable failure is rethrown so the host retries it with back-off (and
 * moves it to the poison queue in the end); a permanent one (wrong secret, no consent, missing
 * permission) is recorded on the tenant's status and logged, not retried: the next schedule tries again.
 * A retryable listing failure after whole pages were enqueued is not rethrown: pollTenant has queued a
 * follow-up request from the failed page (status `retrying`), so the host's retry would only redo them.
 * Each run is a span and counts in the poll metrics (`failed` when it threw).
 */
export async function handlePollRequest(
  message: unknown,
  services: Services,
  logger: Logger,
  attempt: { dequeueCount?: number } = {},
): Promise<PollOutcome | undefined> {
  const log = redactingLogger(logger);
  const parsed = pollRequestSchema.safeParse(message);
  if (!parsed.success) {
    const reason = parsed.error.issues.map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`).join('; ');
    log.error(`pollTenant: invalid poll request dead-lettered (${reason})`);
    await deadLetter(services.sender, QUEUE_NAMES.pollRequests, message, reason, 'invalid-message');
    return undefined;
  }
  const { tenantId } = parsed.data;
  const started = performance.now();
  const measured = (outcome: PollRunOutcome) => recordPollRun(tenantId, outcome, performance.now() - started);
  // After every run, the checkpoint the tenant has then (moved, or as it was: a backlog or a failing tenant falls behind).
  const recordLag = (checkpoint: string | undefined) => {
    if (checkpoint) recordCheckpointLag(tenantId, checkpoint, new Date());
  };
  return tracePollRun(tenantId, async (span) => {
    // Read now, written once the poll is done: the status row costs the poll one round trip, not two.
    const status = services.tenantStatus.prefetch(tenantId);
    try {
      const outcome = await pollTenant(parsed.data, {
        ...services,
        maxPagesPerRun: services.config.pollMaxPagesPerRun,
      });
      const cause = outcome.status === 'retrying' ? describeError(outcome.failure) : undefined;
      // A poll that lost the checkpoint race enqueued what the winner enqueued too (the enricher skips the
      // copies): the tenant's count of events in takes the winner's alone.
      const counted = outcome.status === 'conflict' ? 0 : outcome.enqueued;
      recordLag(
        await services.tenantStatus.recordPoll(
          tenantId,
          { outcome: outcome.status, error: cause, eventsEnqueued: counted, checkpoint: outcome.checkpoint },
          { read: status },
        ),
      );
      measured(outcome.status);
      describeOutcome(span, outcome.status);
      const summary =
        `pollTenant ${tenantId}: ${outcome.status}, ${outcome.enqueued} event(s) enqueued` +
        ` (${outcome.fetched} listed in ${outcome.pages} page(s), ${outcome.duplicates} already delivered, ${outcome.claimChecked} claim-checked` +
        `${outcome.refused.length ? `, ${outcome.refused.length} refused and dead-lettered` : ''})`;
      for (const { eventId, reason } of outcome.refused)
        log.error(`pollTenant ${tenantId}: ${eventId} dead-lettered: ${reason}`);
      if (outcome.status === 'conflict')
        log.info(
          `${summary}; another poll of this tenant advanced the checkpoint first: these events are copies the enricher skips`,
        );
      else if (cause)
        log.warn(`${summary}; the listing failed, a follow-up request goes on from the failed page: ${cause}`);
      else log.info(summary);
      return outcome;
    } catch (err) {
      if (err instanceof TenantNotFoundError) {
        log.warn(`pollTenant: ${err.message}; request dropped`);
        return undefined;
      }
      measured(FAILED_POLL_OUTCOME);
      describeOutcome(span, FAILED_POLL_OUTCOME, err);
      const retryable = isRetryable(err);
      const cause = describeError(err);
      recordLag(
        await services.tenantStatus
          .recordPoll(
            tenantId,
            { outcome: retryable ? 'retrying' : 'failed', error: cause, eventsEnqueued: 0 },
            { read: status },
          )
          .catch(() => undefined),
      );
      log.error(`pollTenant ${tenantId} ${retryable ? 'failed, will be retried' : 'failed (not retried)'}: ${cause}`);
      if (!retryable) return undefined;
      countIfPoisoned(QUEUE_NAMES.pollRequests, attempt.dequeueCount, failureCategory(err));
      throw err;
    }
  });
}
