import { app, type InvocationContext } from '@azure/functions';
import { consumeRoutedMessage } from '../consumer.js';
import { dependencies } from '../dependencies.js';

/** A routed queue of the relay (RELAY_QUEUE), read with this app's identity (connection RelayStorage). */
export async function routedIncident(message: unknown, context: InvocationContext): Promise<void> {
  await consumeRoutedMessage(message, dependencies(context));
}

app.storageQueue('routedIncident', { queueName: '%RELAY_QUEUE%', connection: 'RelayStorage', handler: routedIncident });
