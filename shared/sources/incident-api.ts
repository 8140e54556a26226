import type { BudgetClass, DefenderCallBudget } from './call-budget.js';
import type { DefenderIncident, HuntingResult, IncidentUpdate } from './defender/client.js';
import { apiOf, type IncidentEnvelope } from '../messages/events.js';
import type { Tenant } from '../tenants/tenants.js';
import { defenderViewOf } from './graph/incident-view.js';

/**
 * What the enricher and write-back call on a tenant's incident API, whichever it is: `DefenderClient`
 * for a Defender tenant, `GraphIncidentApi` (the same calls through Microsoft Graph, answered in the
 * Defender shape) for a Graph tenant.
 */
export interface IncidentApiClient {
  readonly budget: DefenderCallBudget;
  readonly budgetClass: BudgetClass;
  withBudgetClass(budgetClass: BudgetClass): IncidentApiClient;
  /** How long a call of `operation` would wait now for this client's share of the tenant's budget (0: at once). */
  budgetWait(tenantId: string, operation: string): number;
  getIncident(tenant: Tenant, incidentId: number): Promise<DefenderIncident>;
  updateIncident(
    tenant: Tenant,
    incidentId: number,
    update: Pick<IncidentUpdate, 'tags' | 'comment'>,
  ): Promise<unknown>;
  runHuntingQuery(tenant: Tenant, query: string): Promise<HuntingResult>;
}

/**
 * An event's incident in the Defender shape that enrichment, routing rules, formats and echo detection
 * read; the routed message keeps the incident as its API gave it.
 */
export function incidentViewOf(
  envelope: Pick<IncidentEnvelope, 'schema'>,
  incident: Record<string, unknown>,
): Record<string, unknown> {
  return apiOf(envelope) === 'graph' ? defenderViewOf(incident) : incident;
}
