// Verifies a tokengate internal token with npm jose, the way a Node.js service would:
//   node verify.mjs <jwks-url> <token> <issuer> <audience>
// Prints the verified header and payload as JSON; exits 1 with the reason on failure.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksURL, token, issuer, audience] = process.argv.slice(2);
if (!audience) {
  console.error('usage: node verify.mjs <jwks-url> <token> <issuer> <audience>');
  process.exit(2);
}
try {
  const jwks = createRemoteJWKSet(new URL(jwksURL));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    typ: 'at+jwt', // RFC 9068 §4
    algorithms: ['ES256', 'EdDSA', 'RS256'],
  });
  console.log(JSON.stringify({ header: protectedHeader, payload }));
} catch (err) {
  console.error(`jose: ${err.code ?? ''} ${err.message}`);
  process.exit(1);
}
