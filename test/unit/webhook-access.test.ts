import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigFileError } from '../../shared/config-file.js';
import { loadWebhookAccess, parseWebhookAccess, WebhookAccess } from '../../shared/webhook-access.js';

const MSSP = '11111111-1111-1111-1111-111111111111';
const AUTOMATION = '22222222-2222-2222-2222-222222222222';
const FABRIKAM = '33333333-3333-3333-3333-333333333333';
const NORTHWIND = '44444444-4444-4444-4444-444444444444';
const OTHER = '55555555-5555-5555-5555-555555555555';

function access(file: unknown, own: string[] = []): WebhookAccess {
  const parsed = parseWebhookAccess(file);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  return new WebhookAccess(parsed.access, own);
}

describe('webhook access: who may push for whom', () => {
  it('lets a token push for its own tenant only when that tenant is allowed, and for nothing else by default', () => {
    const a = WebhookAccess.none([FABRIKAM]);
    expect(a.tokenMayPushFor({ tenantId: FABRIKAM, clientId: AUTOMATION }, FABRIKAM)).toBe(true);
    expect(a.tokenMayPushFor({ tenantId: FABRIKAM, clientId: AUTOMATION }, NORTHWIND)).toBe(false);
    expect(a.tokenMayPushFor({ tenantId: NORTHWIND, clientId: AUTOMATION }, NORTHWIND)).toBe(false);
    expect(a.hmacKeysFor(FABRIKAM)).toEqual([]);
  });

  it('grants a caller exactly the tenants it lists, matched on its tenant and identity', () => {
    const a = access({ callers: [{ name: 'automation', tenantId: MSSP, appId: AUTOMATION, mayPushFor: [FABRIKAM, NORTHWIND.toUpperCase()] }] });
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, FABRIKAM)).toBe(true);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION.toUpperCase() }, NORTHWIND)).toBe(true);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, OTHER)).toBe(false);
    // Another app of the same tenant, or the same app id issued by another tenant, is not that caller.
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: OTHER }, FABRIKAM)).toBe(false);
    expect(a.tokenMayPushFor({ tenantId: OTHER, clientId: AUTOMATION }, FABRIKAM)).toBe(false);
    expect(a.tokenTenantIds()).toEqual([MSSP]);
  });

  it('with both appId and objectId, requires both', () => {
    const a = access({ callers: [{ name: 'mi', tenantId: MSSP, appId: AUTOMATION, objectId: OTHER, mayPushFor: [FABRIKAM] }] });
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION, objectId: OTHER }, FABRIKAM)).toBe(true);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION, objectId: NORTHWIND }, FABRIKAM)).toBe(false);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, FABRIKAM)).toBe(false);
  });

  it('gives each tenant the HMAC keys that list it, and no other', () => {
    const a = access({ hmacKeys: [{ name: 'fab', secretName: 'fab-key', mayPushFor: [FABRIKAM] }, { name: 'both', secretName: 'both-key', mayPushFor: [FABRIKAM, NORTHWIND] }] });
    expect(a.hmacKeysFor(FABRIKAM).map((k) => k.name)).toEqual(['fab', 'both']);
    expect(a.hmacKeysFor(NORTHWIND).map((k) => k.name)).toEqual(['both']);
    expect(a.hmacKeysFor(OTHER)).toEqual([]);
    expect(a.hmacSecretNames()).toEqual(['fab-key', 'both-key']);
  });

  it('refuses a file that would grant more than it says, naming each field', () => {
    const problems = (file: unknown) => {
      const parsed = parseWebhookAccess(file);
      return parsed.ok ? [] : parsed.problems.map((p) => `${p.path.join('.')}: ${p.message}`);
    };
    expect(problems({ callers: [{ name: 'whole-tenant', tenantId: MSSP, mayPushFor: [FABRIKAM] }] })).toEqual(['callers.0.appId: give appId or objectId (or both): a grant names one identity, not a whole tenant']);
    expect(problems({ callers: [{ name: 'x', tenantId: MSSP, appId: AUTOMATION, mayPushFor: ['*'] }] })).toEqual(['callers.0.mayPushFor.0: must be a GUID']);
    expect(problems({ callers: [{ name: 'x', tenantId: MSSP, appId: AUTOMATION, mayPushFor: [] }] })).toEqual(['callers.0.mayPushFor: must list at least one tenant GUID']);
    expect(problems({ hmacKeys: [{ name: 'a', secretName: 'k', mayPushFor: [FABRIKAM] }, { name: 'b', secretName: 'k', mayPushFor: [NORTHWIND] }] })).toEqual(['hmacKeys.1.secretName: the same secretName as hmacKeys.0.secretName']);
    expect(problems({ callers: [], surprise: true })[0]).toMatch(/surprise|Unrecognized key/);
    expect(problems({ hmacKeys: [{ name: 'a', secretName: 'k', mayPushFor: [FABRIKAM], extra: 1 }] })[0]).toMatch(/^hmacKeys\.0/);
  });

  it('reads the example file shipped with the project', () => {
    const a = access(JSON.parse(readFileSync('webhook-access.example.json', 'utf8')));
    expect(a.hmacKeysFor(FABRIKAM).map((k) => k.name)).toEqual(['fabrikam-siem']);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, NORTHWIND)).toBe(true);
  });

  it('loads the file WEBHOOK_ACCESS_FILE names, and names file, line and field of every problem', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-access-'));
    const file = join(dir, 'webhook-access.json');
    writeFileSync(file, `{\n  "callers": [\n    { "name": "x", "tenantId": "${MSSP}", "appId": "${AUTOMATION}",\n      "mayPushFor": ["${FABRIKAM}", "everyone"] }\n  ]\n}\n`);
    let error: unknown;
    try {
      loadWebhookAccess({ accessFile: file, allowedTenantIds: [] });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigFileError);
    expect((error as Error).message).toContain(`WEBHOOK_ACCESS_FILE ${file}:4:`);
    expect((error as Error).message).toContain('callers[0].mayPushFor[1]: must be a GUID');
    expect(() => loadWebhookAccess({ accessFile: join(dir, 'missing.json'), allowedTenantIds: [] })).toThrow(/WEBHOOK_ACCESS_FILE .*missing\.json: cannot read the file \(ENOENT/);
    // Not set: tokens push for their own (allowed) tenant only, and no key signs for anyone.
    const none = loadWebhookAccess({ allowedTenantIds: [FABRIKAM] });
    expect(none.tokenTenantIds()).toEqual([FABRIKAM]);
    expect(none.hmacKeysFor(FABRIKAM)).toEqual([]);
  });
});
