/**
 * The OpenID Connect discovery document Entra serves at `/{tenant}/v2.0/.well-known/openid-configuration`.
 * MSAL reads authorization_endpoint, token_endpoint, issuer, jwks_uri and end_session_endpoint from it;
 * the rest is there because clients other than MSAL read it too.
 */
export function openIdConfiguration(
  authorityHost: string,
  tenantSegment: string,
  tenantId: string | undefined,
): Record<string, unknown> {
  const base = authorityHost.replace(/\/$/, '');
  const at = `${base}/${tenantSegment}`;
  return {
    token_endpoint: `${at}/oauth2/v2.0/token`,
    token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
    jwks_uri: `${at}/discovery/v2.0/keys`,
    response_modes_supported: ['query', 'fragment', 'form_post'],
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: ['RS256'],
    response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
    scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
    // For common/organizations Entra writes the placeholder; clients substitute the token's tid.
    issuer: `${base}/${tenantId ?? '{tenantid}'}/v2.0`,
    request_uri_parameter_supported: false,
    userinfo_endpoint: `${base}/oidc/userinfo`,
    authorization_endpoint: `${at}/oauth2/v2.0/authorize`,
    device_authorization_endpoint: `${at}/oauth2/v2.0/devicecode`,
    http_logout_supported: true,
    frontchannel_logout_supported: true,
    end_session_endpoint: `${at}/oauth2/v2.0/logout`,
    claims_supported: [
      'sub',
      'iss',
      'cloud_instance_name',
      'cloud_instance_host_name',
      'cloud_graph_host_name',
      'msgraph_host',
      'aud',
      'exp',
      'iat',
      'auth_time',
      'acr',
      'nonce',
      'preferred_username',
      'name',
      'tid',
      'ver',
      'at_hash',
      'c_hash',
      'email',
    ],
    kerberos_endpoint: `${at}/kerberos`,
    tenant_region_scope: 'EU',
    cloud_instance_name: 'microsoftonline.com',
    cloud_graph_host_name: 'graph.windows.net',
    msgraph_host: 'graph.microsoft.com',
    rbac_url: 'https://pas.windows.net',
  };
}

/**
 * The v1.0 discovery document Entra serves at `/{tenant}/.well-known/openid-configuration`: what a
 * resource validating v1.0 access tokens reads ("it needs to read the OpenID Connect metadata document
 * from the v1.0 endpoint ... even if the authority configured for your web API is a v2.0 authority").
 * Its issuer is `https://sts.windows.net/{tid}/` (`{tenantid}` for common/organizations) and its
 * jwks_uri the tenant-independent `/common/discovery/keys`, as Entra writes them.
 * https://learn.microsoft.com/entra/identity-platform/access-tokens#v10-and-v20-tokens
 */
export function openIdConfigurationV1(
  authorityHost: string,
  tenantSegment: string,
  tenantId: string | undefined,
): Record<string, unknown> {
  const base = authorityHost.replace(/\/$/, '');
  const at = `${base}/${tenantSegment}`;
  return {
    token_endpoint: `${at}/oauth2/token`,
    token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
    jwks_uri: `${base}/common/discovery/keys`,
    response_modes_supported: ['query', 'fragment', 'form_post'],
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: ['RS256'],
    response_types_supported: ['code', 'id_token', 'code id_token', 'token id_token', 'token'],
    scopes_supported: ['openid'],
    issuer: `https://sts.windows.net/${tenantId ?? '{tenantid}'}/`,
    microsoft_multi_refresh_token: true,
    authorization_endpoint: `${at}/oauth2/authorize`,
    device_authorization_endpoint: `${at}/oauth2/devicecode`,
    http_logout_supported: true,
    frontchannel_logout_supported: true,
    end_session_endpoint: `${at}/oauth2/logout`,
    claims_supported: [
      'sub',
      'iss',
      'cloud_instance_name',
      'cloud_instance_host_name',
      'cloud_graph_host_name',
      'msgraph_host',
      'aud',
      'exp',
      'iat',
      'auth_time',
      'acr',
      'amr',
      'nonce',
      'email',
      'given_name',
      'family_name',
      'nickname',
    ],
    check_session_iframe: `${at}/oauth2/checksession`,
    userinfo_endpoint: `${at}/openid/userinfo`,
    kerberos_endpoint: `${at}/kerberos`,
    tenant_region_scope: 'EU',
    cloud_instance_name: 'microsoftonline.com',
    cloud_graph_host_name: 'graph.windows.net',
    msgraph_host: 'graph.microsoft.com',
    rbac_url: 'https://pas.windows.net',
  };
}
