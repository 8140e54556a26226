import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigFileError, formatFieldPath } from '../../../shared/config/config-file.js';
import { loadWebhookAccess, parseWebhookAccess, WebhookAccess } from '../../../shared/api/webhook-access.js';

const MSSP = '11111111-1111-1111-1111-111111111111';
const AUTOMATION = '22222222-2222-2222-2222-222222222222';
const FABRIKAM = '33333333-3333-3333-3333-333333333333';
const NORTHWIND = '44444444-4444-4444-4444-444444444444';
const OTHER = '55555555-5555-5555-5555-555555555555';
/** With hex letters, so that case matters. */
const MANAGED_IDENTITY = 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d';
const PIPELINE = 'c0ffee00-ab12-4cde-9f01-23456789abcd';
const CONTOSO = 'c0a7b1e2-d3f4-4a5b-9c6d-7e8f9a0b1c2d';

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
    const a = access({
      callers: [
        { name: 'automation', tenantId: MSSP, appId: AUTOMATION, mayPushFor: [FABRIKAM, NORTHWIND.toUpperCase()] },
      ],
    });
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, FABRIKAM)).toBe(true);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION.toUpperCase() }, NORTHWIND)).toBe(true);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, OTHER)).toBe(false);
    // Another app of the same tenant, or the same app id issued by another tenant, is not that caller.
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: OTHER }, FABRIKAM)).toBe(false);
    expect(a.tokenMayPushFor({ tenantId: OTHER, clientId: AUTOMATION }, FABRIKAM)).toBe(false);
    expect(a.tokenTenantIds()).toEqual([MSSP]);
    // GUIDs match in any case, in the file and in the token.
    const b = access({
      callers: [
        { name: 'pipeline', tenantId: MSSP, appId: PIPELINE.toUpperCase(), mayPushFor: [CONTOSO.toUpperCase()] },
      ],
    });
    expect(b.tokenMayPushFor({ tenantId: MSSP, clientId: PIPELINE }, CONTOSO)).toBe(true);
    expect(b.tokenMayPushFor({ tenantId: MSSP, clientId: PIPELINE.toUpperCase() }, CONTOSO.toUpperCase())).toBe(true);
  });

  it('with both appId and objectId, requires both', () => {
    const a = access({
      callers: [{ name: 'mi', tenantId: MSSP, appId: AUTOMATION, objectId: OTHER, mayPushFor: [FABRIKAM] }],
    });
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION, objectId: OTHER }, FABRIKAM)).toBe(true);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION, objectId: NORTHWIND }, FABRIKAM)).toBe(false);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, FABRIKAM)).toBe(false);
  });

  it('with objectId only, grants that service principal or managed identity whatever app its token names', () => {
    const a = access({
      callers: [{ name: 'mi', tenantId: MSSP, objectId: MANAGED_IDENTITY.toUpperCase(), mayPushFor: [FABRIKAM] }],
    });
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION, objectId: MANAGED_IDENTITY }, FABRIKAM)).toBe(
      true,
    );
    expect(a.tokenMayPushFor({ tenantId: MSSP, objectId: MANAGED_IDENTITY.toUpperCase() }, FABRIKAM)).toBe(true);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION, objectId: NORTHWIND }, FABRIKAM)).toBe(false);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, FABRIKAM)).toBe(false);
  });

  it('gives each tenant the HMAC keys that list it, and no other', () => {
    const a = access({
      hmacKeys: [
        { name: 'fab', secretName: 'fab-key', mayPushFor: [FABRIKAM] },
        { name: 'both', secretName: 'both-key', mayPushFor: [FABRIKAM, NORTHWIND] },
      ],
    });
    expect(a.hmacKeysFor(FABRIKAM).map((k) => k.name)).toEqual(['fab', 'both']);
    expect(a.hmacKeysFor(NORTHWIND).map((k) => k.name)).toEqual(['both']);
    expect(a.hmacKeysFor(OTHER)).toEqual([]);
    expect(a.hmacSecretNames()).toEqual(['fab-key', 'both-key']);
  });

  it('refuses a file that would grant more than it says, naming each field', () => {
    const problems = (file: unknown) => {
      const parsed = parseWebhookAccess(file);
      return parsed.ok ? [] : parsed.problems.map((p) => `${formatFieldPath(p.path)}: ${p.message}`);
    };
    expect(problems({ callers: [{ name: 'whole-tenant', tenantId: MSSP, mayPushFor: [FABRIKAM] }] })).toEqual([
      'callers[0].appId: give appId or objectId (or both): a grant names one identity, not a whole tenant',
    ]);
    expect(problems({ callers: [{ name: 'x', tenantId: MSSP, appId: AUTOMATION, mayPushFor: ['*'] }] })).toEqual([
      'callers[0].mayPushFor[0]: must be a GUID',
    ]);
    expect(problems({ callers: [{ name: 'x', tenantId: MSSP, appId: AUTOMATION, mayPushFor: [] }] })).toEqual([
      'callers[0].mayPushFor: must list at least one tenant GUID',
    ]);
    expect(
      problems({
        hmacKeys: [
          { name: 'a', secretName: 'k', mayPushFor: [FABRIKAM] },
          { name: 'b', secretName: 'k', mayPushFor: [NORTHWIND] },
        ],
      }),
    ).toEqual(['hmacKeys[1].secretName: the same secretName as hmacKeys[0].secretName']);
    expect(problems({ callers: [], surprise: true })[0]).toMatch(/surprise|Unrecognized key/);
    expect(problems({ hmacKeys: [{ name: 'a', secretName: 'k', mayPushFor: [FABRIKAM], extra: 1 }] })[0]).toMatch(
      /^hmacKeys\[0\]/,
    );
  });

  it('reads the example file shipped with the project', () => {
    const a = access(JSON.parse(readFileSync('webhook-access.example.json', 'utf8')));
    expect(a.hmacKeysFor(FABRIKAM).map((k) => k.name)).toEqual(['fabrikam-siem']);
    expect(a.tokenMayPushFor({ tenantId: MSSP, clientId: AUTOMATION }, NORTHWIND)).toBe(true);
  });

  it('loads the file WEBHOOK_ACCESS_FILE names, and names file, line and field of every problem', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-access-'));
    const file = join(dir, 'webhook-access.json');
    writeFileSync(
      file,
      `{\n  "callers": [\n    { "name": "x", "tenantId": "${MSSP}", "appId": "${AUTOMATION}",\n      "mayPushFor": ["${FABRIKAM}", "everyone"] }\n  ]\n}\n`,
    );
    let error: unknown;
    try {
      loadWebhookAccess({ accessFile: file, allowedTenantIds: [] });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigFileError);
    expect((error as Error).message).toContain(`WEBHOOK_ACCESS_FILE ${file}:4:`);
    expect((error as Error).message).toContain('callers[0].mayPushFor[1]: must be a GUID');
    expect(() => loadWebhookAccess({ accessFile: join(dir, 'missing.json'), allowedTenantIds: [] })).toThrow(
      /WEBHOOK_ACCESS_FILE .*missing\.json: cannot read the file \(ENOENT/,
    );
    // Not set: tokens push for their own (allowed) tenant only, and no key signs for anyone.
    const none = loadWebhookAccess({ allowedTenantIds: [FABRIKAM] });
    expect(none.tokenTenantIds()).toEqual([FABRIKAM]);
    expect(none.hmacKeysFor(FABRIKAM)).toEqual([]);
  });

  it('refuses a file that gives one name or one caller identity twice, naming both entries with their lines', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-access-'));
    const file = join(dir, 'webhook-access.json');
    const callers = [
      { name: 'soc', tenantId: MSSP, appId: PIPELINE, mayPushFor: [FABRIKAM] },
      // The same app of the same tenant under another name (GUIDs in any case): which grant would apply?
      { name: 'soc-2', tenantId: MSSP, appId: PIPELINE.toUpperCase(), mayPushFor: [NORTHWIND] },
      // Another identity of that tenant is fine.
      { name: 'mi', tenantId: MSSP, appId: PIPELINE, objectId: MANAGED_IDENTITY, mayPushFor: [NORTHWIND] },
    ];
    const hmacKeys = [{ name: 'soc', secretName: 'soc-key', mayPushFor: [FABRIKAM] }];
    writeFileSync(
      file,
      `{\n  "callers": [\n${callers.map((c) => `    ${JSON.stringify(c)}`).join(',\n')}\n  ],\n  "hmacKeys": [\n    ${JSON.stringify(hmacKeys[0])}\n  ]\n}\n`,
    );
    let error: unknown;
    try {
      loadWebhookAccess({ accessFile: file, allowedTenantIds: [] });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigFileError);
    expect((error as ConfigFileError).lines()).toEqual([
      `WEBHOOK_ACCESS_FILE ${file}:4:5: callers[1]: the same identity as callers[0]`,
      `WEBHOOK_ACCESS_FILE ${file}:8:6: hmacKeys[0].name: the same name as callers[0].name`,
    ]);
  });
});
