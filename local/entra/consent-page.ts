import type { EntraRegistry } from './registry.js';

/**
 * The page behind the partner admin-consent link (`/common/oauth2/authorize?prompt=consent&client_id=…`).
 * Entra shows a sign-in and a permissions prompt; locally there is nobody to sign in, so the page names
 * the app and says how consent is granted here (`POST /_control/consent`).
 */
export function consentPage(
  registry: EntraRegistry,
  tenantSegment: string,
  query: Record<string, unknown>,
): { status: number; html: string } {
  const clientId = typeof query.client_id === 'string' ? query.client_id : '';
  if (!clientId) return errorPage("AADSTS900144: The request body must contain the following parameter: 'client_id'.");
  const app = registry.app(clientId);
  if (!app) {
    return errorPage(
      `AADSTS700016: Application with identifier '${clientId}' was not found in the directory '${tenantSegment}'.`,
    );
  }
  if (!app.multiTenant && tenantSegment.toLowerCase() !== app.homeTenantId) {
    return errorPage(
      `AADSTS50194: Application '${app.clientId}'(${app.displayName}) is not configured as a multi-tenant application.`,
    );
  }
  const prompt = typeof query.prompt === 'string' ? query.prompt : '';
  const body =
    `<h1>Permissions requested</h1><p><strong>${escapeHtml(app.displayName)}</strong> (${escapeHtml(app.clientId)}) ` +
    `asks an administrator to consent on behalf of the organization${prompt === 'consent' ? '' : ' (add prompt=consent to request admin consent)'}.</p>` +
    '<p>This is the local Entra ID stand-in: grant consent with <code>POST /_control/consent {"tenantId", "clientId"}</code>.</p>';
  return { status: 200, html: page('Permissions requested', body) };
}

function errorPage(message: string): { status: number; html: string } {
  return {
    status: 400,
    html: page(
      'Sign in error',
      `<h1>Sorry, but we’re having trouble signing you in.</h1><p>${escapeHtml(message)}</p>`,
    ),
  };
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body>${body}</body></html>`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
