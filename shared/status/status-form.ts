import * as z from 'zod';

/** The status page's replay form, as the browser posts it (application/x-www-form-urlencoded). */
export const replayFormSchema = z.object({
  action: z.literal('replay', { error: 'action must be replay' }),
  source: z.enum(['all', 'deadletter', 'poison'], { error: 'source must be all, deadletter or poison' }),
});

/**
 * Whether a POST comes from the page itself: browsers send `Origin` with every form POST (Fetch
 * standard, "append a request Origin header"); a client that sends none (curl, a script with the key)
 * is not a cross-site form.
 */
export function sameOrigin(origin: string | null, requestUrl: string): boolean {
  if (origin === null) return true;
  try {
    return new URL(origin).origin === new URL(requestUrl).origin;
  } catch {
    return false;
  }
}
