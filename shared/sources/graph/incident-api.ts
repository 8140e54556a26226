import type { BudgetClass } from '../call-budget.js';
import type { DefenderIncident, HuntingResult, IncidentUpdate } from '../defender/client.js';
import type { Tenant } from '../../tenants/tenants.js';
import type { GraphClient } from './client.js';
import { defenderViewOf } from './incident-view.js';

/**
 * A Graph tenant's incidents as the enricher and write-back use a Defender tenant's: the same calls
 * (get an incident, tag or comment it), made through Microsoft Graph and answered in the Defender
 * shape (`defenderViewOf`), so that enrichment, routing and echo detection are one code path.
 */
export class GraphIncidentApi {
  readonly #views = new Map<BudgetClass, GraphIncidentApi>();

  constructor(readonly graph: GraphClient) {
    this.#views.set(graph.budgetClass, this);
  }

  get budget() {
    return this.graph.budget;
  }

  get budgetClass(): BudgetClass {
    return this.graph.budgetClass;
  }

  budgetWait(tenantId: string, operation: string): number {
    return this.graph.budgetWait(tenantId, operation);
  }

  withBudgetClass(budgetClass: BudgetClass): GraphIncidentApi {
    let view = this.#views.get(budgetClass);
    if (!view) {
      view = new GraphIncidentApi(this.graph.withBudgetClass(budgetClass));
      this.#views.set(budgetClass, view);
    }
    return view;
  }

  async getIncident(tenant: Tenant, incidentId: number): Promise<DefenderIncident> {
    return defenderViewOf(await this.graph.getIncident(tenant, incidentId)) as DefenderIncident;
  }

  /**
   * The relay's write-back: tags through PATCH (`customTags`: Graph replaces the list, as Defender does
   * `tags`), a comment through the comments endpoint (security-incident-post-comments.md), since the
   * incident's PATCH takes no comment.
   */
  async updateIncident(
    tenant: Tenant,
    incidentId: number,
    update: Pick<IncidentUpdate, 'tags' | 'comment'>,
  ): Promise<void> {
    if (update.tags !== undefined) await this.graph.updateIncident(tenant, incidentId, { customTags: update.tags });
    if (update.comment !== undefined) await this.graph.addComment(tenant, incidentId, update.comment);
  }

  /** Advanced hunting through Graph (runHuntingQuery, ThreatHunting.Read.All), in the Defender API's shape. */
  runHuntingQuery(tenant: Tenant, query: string): Promise<HuntingResult> {
    return this.graph.runHuntingQuery(tenant, query);
  }
}
