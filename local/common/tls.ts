import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import forge from 'node-forge';

/** A certificate and its private key, both PEM. */
export interface KeyAndCert {
  key: string;
  cert: string;
}

/** A throwaway certificate authority that lives only as long as the stack (its key never touches disk). */
export interface LocalCa {
  caCertPem: string;
  /** Issues a server certificate for the given DNS names and IP addresses, signed by this CA. */
  issueServerCert(names?: string[]): KeyAndCert;
  /** Issues a client certificate (e.g. for an app registration's certificate credential). */
  issueClientCert(commonName: string): KeyAndCert;
}

const DEFAULT_SERVER_NAMES = ['localhost', '127.0.0.1', '::1'];

function newRsaKeyPair(): {
  privateKey: forge.pki.rsa.PrivateKey;
  publicKey: forge.pki.rsa.PublicKey;
  privatePem: string;
} {
  // Node's native generator is far faster than forge's pure-JS one.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(privatePem);
  const publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  return { privateKey: forgeKey, publicKey, privatePem };
}

function baseCert(publicKey: forge.pki.rsa.PublicKey, days: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  // Positive serial: a leading 0x00..0x7f byte keeps the DER integer positive.
  cert.serialNumber = '01' + randomBytes(15).toString('hex');
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + days * 86_400_000);
  return cert;
}

function isIp(name: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(name) || name.includes(':');
}

/** Creates a new CA in memory. */
export function createLocalCa(commonName = 'defender-relay local CA'): LocalCa {
  const ca = newRsaKeyPair();
  const caCert = baseCert(ca.publicKey, 30);
  const caSubject = [
    { name: 'commonName', value: commonName },
    { name: 'organizationName', value: 'defender-relay (local only)' },
  ];
  caCert.setSubject(caSubject);
  caCert.setIssuer(caSubject);
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  caCert.sign(ca.privateKey, forge.md.sha256.create());
  const caCertPem = forge.pki.certificateToPem(caCert);

  function issue(commonNameOfLeaf: string, extensions: object[]): KeyAndCert {
    const leaf = newRsaKeyPair();
    const cert = baseCert(leaf.publicKey, 7);
    cert.setSubject([{ name: 'commonName', value: commonNameOfLeaf }]);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([{ name: 'basicConstraints', cA: false }, ...extensions]);
    cert.sign(ca.privateKey, forge.md.sha256.create());
    return { key: leaf.privatePem, cert: forge.pki.certificateToPem(cert) };
  }

  return {
    caCertPem,
    issueServerCert(names = DEFAULT_SERVER_NAMES) {
      return issue(names[0] ?? 'localhost', [
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        {
          name: 'subjectAltName',
          altNames: names.map((n) => (isIp(n) ? { type: 7, ip: n } : { type: 2, value: n })),
        },
      ]);
    },
    issueClientCert(cn) {
      return issue(cn, [
        { name: 'keyUsage', digitalSignature: true, critical: true },
        { name: 'extKeyUsage', clientAuth: true },
      ]);
    },
  };
}

/** Writes the CA certificate (public part only) where child processes can find it via NODE_EXTRA_CA_CERTS. */
export function writeCaCert(ca: LocalCa, path: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, ca.caCertPem);
  return path;
}

/**
 * A self-signed certificate, as app registrations use for certificate credentials
 * (Entra checks the key against the uploaded certificate, not a chain).
 */
export function createSelfSignedCert(commonName: string, days = 30): KeyAndCert {
  const pair = newRsaKeyPair();
  const cert = baseCert(pair.publicKey, days);
  const subject = [{ name: 'commonName', value: commonName }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true },
  ]);
  cert.sign(pair.privateKey, forge.md.sha256.create());
  return { key: pair.privatePem, cert: forge.pki.certificateToPem(cert) };
}
