import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { consumeRoutedMessage } from '../consumer.js';
import { dependencies } from '../dependencies.js';
import { webhookHeaderProblems } from '../messages.js';
import { verifyRelaySignature } from '../signature.js';

/**
 * POST /api/relay-webhook: a webhook destination of the relay with `hmacSecretName`; the same key is
 * this app's RELAY_WEBHOOK_HMAC_KEY (a Key Vault reference in Azure). Anonymous: the signature is the
 * authentication, checked over the raw body before anything is parsed.
 */
export async function relayWebhook(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const key = process.env.RELAY_WEBHOOK_HMAC_KEY;
  if (!key) return { status: 500, body: 'RELAY_WEBHOOK_HMAC_KEY is not set' };
  const body = new Uint8Array(await request.arrayBuffer());
  const signature = verifyRelaySignature(request.headers.get('x-relay-signature'), key, body);
  if (!signature.ok) return { status: 401, body: signature.reason };
  const headerProblems = webhookHeaderProblems(Object.fromEntries(request.headers));
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return { status: 400, body: 'the body is not JSON' };
  }
  if (headerProblems.length > 0) return { status: 400, body: headerProblems.join('; ') };
  const outcome = await consumeRoutedMessage(parsed, dependencies(context));
  // The relay retries 5xx and 429; an invalid message would fail the same way again.
  if (outcome.status === 'invalid') return { status: 400, body: outcome.problems.join('; ') };
  return { status: 204 };
}

app.http('relayWebhook', { methods: ['POST'], authLevel: 'anonymous', route: 'relay-webhook', handler: relayWebhook });
