import { X509Certificate } from 'node:crypto';
import { decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { entraErrors } from './errors.js';
import type { AppRegistration } from './registry.js';
import type { ClientAuthenticationMethod } from './token-issuer.js';

export const JWT_BEARER_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** The client credential a token request carries, from the form body (or HTTP Basic, which Entra also accepts). */
export interface ClientCredentialParams {
  clientSecret?: string;
  clientAssertionType?: string;
  clientAssertion?: string;
}

/**
 * Authenticates the calling app as Entra does: a secret it holds, or a client assertion (RFC 7523)
 * signed with the key of one of its registered certificates, addressed to this token endpoint.
 * `allowPublicClient` lets a public client (ROPC) call with no credential at all. Returns how the
 * client authenticated (the token's `appidacr`/`azpacr`).
 */
export async function authenticateClient(
  app: AppRegistration,
  params: ClientCredentialParams,
  options: { tokenEndpoints: string[]; allowPublicClient: boolean },
): Promise<ClientAuthenticationMethod> {
  if (params.clientAssertion !== undefined || params.clientAssertionType !== undefined) {
    if (!params.clientAssertionType) throw entraErrors.missingParameter('client_assertion_type');
    if (params.clientAssertionType !== JWT_BEARER_ASSERTION_TYPE)
      throw entraErrors.unsupportedAssertionType(params.clientAssertionType);
    if (!params.clientAssertion) throw entraErrors.missingParameter('client_assertion');
    await verifyClientAssertion(app, params.clientAssertion, options.tokenEndpoints);
    return 'certificate';
  }
  if (params.clientSecret !== undefined) {
    if (!app.secrets.has(params.clientSecret)) throw entraErrors.invalidClientSecret(app.clientId);
    return 'secret';
  }
  if (options.allowPublicClient && app.publicClient) return 'public';
  throw entraErrors.clientCredentialRequired();
}

async function verifyClientAssertion(app: AppRegistration, assertion: string, tokenEndpoints: string[]): Promise<void> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(assertion);
  } catch {
    throw entraErrors.assertionInvalid('The client assertion is not a well-formed JWT.');
  }
  const x5tS256 = typeof header['x5t#S256'] === 'string' ? header['x5t#S256'] : undefined;
  const x5t = typeof header.x5t === 'string' ? header.x5t : undefined;
  if (!x5tS256 && !x5t)
    throw entraErrors.assertionInvalid('The assertion header names no certificate (x5t or x5t#S256).');
  const certificate = app.certificates.find((c) => (x5tS256 ? c.x5tS256 === x5tS256 : c.x5t === x5t));
  if (!certificate) throw entraErrors.assertionCertificateUnknown(x5tS256 ?? x5t ?? '');
  const now = Date.now();
  if (certificate.notAfter.getTime() < now || certificate.notBefore.getTime() > now) {
    throw entraErrors.assertionInvalid('The key used is expired.');
  }

  let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
  try {
    ({ payload } = await jwtVerify(assertion, new X509Certificate(certificate.pem).publicKey, {
      algorithms: ['RS256', 'PS256'],
      requiredClaims: ['exp', 'aud', 'iss', 'sub'],
      clockTolerance: 300,
    }));
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw entraErrors.assertionExpired();
    if (err instanceof errors.JWTClaimValidationFailed) {
      if (err.claim === 'nbf' && err.reason === 'check_failed') throw entraErrors.assertionExpired();
      throw entraErrors.assertionInvalid(`The assertion has no valid '${err.claim}' claim.`);
    }
    throw entraErrors.assertionInvalid('The signature does not match the registered certificate.');
  }
  const audiences = (Array.isArray(payload.aud) ? payload.aud : [payload.aud]).map((a) => String(a).toLowerCase());
  if (!audiences.some((a) => tokenEndpoints.includes(a))) throw entraErrors.assertionWrongAudience();
  if (payload.iss?.toLowerCase() !== app.clientId || payload.sub?.toLowerCase() !== app.clientId) {
    throw entraErrors.assertionWrongClient();
  }
}
