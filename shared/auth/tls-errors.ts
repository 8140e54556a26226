/**
 * A server certificate this process does not trust, told apart from a refusal: Node reports it with
 * OpenSSL's verify codes (node: lib/_tls_wrap.js, `onConnectSecure`; the codes in
 * https://nodejs.org/api/tls.html#x509-certificate-error-codes), often wrapped by the SDK in a
 * RestError or in fetch's `cause`. The local stack's stand-ins are signed by its own CA, which a
 * process trusts only through NODE_EXTRA_CA_CERTS, read at start-up.
 */
const UNTRUSTED_CERTIFICATE_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The verify code when `err` (or an error in its `cause` chain) is an untrusted certificate; else undefined. */
export function untrustedCertificateCode(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined;
    e && typeof e === 'object' && !seen.has(e);
    e = e.cause as typeof e
  ) {
    seen.add(e);
    if (typeof e.code === 'string' && UNTRUSTED_CERTIFICATE_CODES.has(e.code)) return e.code;
  }
  return undefined;
}

/** Whether the failure is a certificate this process does not trust. */
export function isTlsTrustFailure(err: unknown): boolean {
  return untrustedCertificateCode(err) !== undefined;
}

/** What to tell an operator: the service's certificate is not trusted, and what to trust for the local stack. */
export function untrustedCertificateMessage(service: string, code: string): string {
  return `${service}'s TLS certificate is not trusted (${code}): for the local stack, NODE_EXTRA_CA_CERTS must name its CA (the file npm start names in its local.settings.json) when the process starts`;
}
