// Verify tokengate's internal access tokens in Java with Nimbus JOSE+JWT alone (no tokengate
// code). Tested with com.nimbusds:nimbus-jose-jwt:10.9.1 (Maven Central) on Java 17 and later.
//
// Copy processor() into your service. It reads tokengate's discovery document once, fetches the
// JWKS through a JWKSource (cached; refetched when a token names an unknown kid, i.e. after a
// key rotation) and checks what RFC 9068 asks: the pinned algorithm, JOSE typ at+jwt, iss, aud
// (your service), exp, iat, sub. A token is then refused at its exp; to refuse a logged-out
// session's tokens within about a second, put tokengate-auth in front of the service instead
// (docs/verify-any-language.md).
//
// As a program it prints "ready: ..." to standard error once it has the discovery document,
// then reads tokens from standard input, one a line, and prints one line each,
// "ok sub=... sid=..." (with " act=payments,orders" for a delegated token) or "refused: <reason>"; it exits 0 when every token was accepted, else 1:
//
//   java -cp nimbus-jose-jwt-10.9.1.jar Verify.java https://tokengate.internal orders < tokens.txt

import com.nimbusds.jose.JOSEObjectType;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.DefaultJOSEObjectTypeVerifier;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jose.util.JSONObjectUtils;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.ConfigurableJWTProcessor;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

public class Verify {
    // tokengate signs with ES256 unless its keys.algorithm says otherwise (EdDSA, RS256): pin
    // what your tokengate uses, never take the algorithm from the token.
    static final JWSAlgorithm ALGORITHM = JWSAlgorithm.ES256;

    /** A processor whose process(token, null) returns the claims or throws on any refusal. */
    static ConfigurableJWTProcessor<SecurityContext> processor(String issuer, String audience) throws Exception {
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        HttpRequest req = HttpRequest.newBuilder(URI.create(issuer.replaceAll("/$", "") + "/.well-known/openid-configuration"))
                .timeout(Duration.ofSeconds(5)).build();
        HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
        if (resp.statusCode() != 200) {
            throw new IllegalStateException("discovery: HTTP " + resp.statusCode());
        }
        Map<String, Object> discovery = JSONObjectUtils.parse(resp.body());
        if (!issuer.equals(discovery.get("issuer"))) {
            throw new IllegalStateException("discovery names issuer " + discovery.get("issuer") + ", want " + issuer);
        }
        JWKSource<SecurityContext> keys = JWKSourceBuilder
                .create(URI.create(JSONObjectUtils.getString(discovery, "jwks_uri")).toURL())
                .retrying(true)
                .build();

        DefaultJWTProcessor<SecurityContext> p = new DefaultJWTProcessor<>();
        p.setJWSTypeVerifier(new DefaultJOSEObjectTypeVerifier<>(
                new JOSEObjectType("at+jwt"), new JOSEObjectType("application/at+jwt")));
        p.setJWSKeySelector(new JWSVerificationKeySelector<>(ALGORITHM, keys));
        DefaultJWTClaimsVerifier<SecurityContext> claims = new DefaultJWTClaimsVerifier<>(
                audience,                                          // aud must contain it
                new JWTClaimsSet.Builder().issuer(issuer).build(), // iss must equal it
                Set.of("sub", "iat", "exp"));
        claims.setMaxClockSkew(5); // seconds; Nimbus's default is 60, longer than tokengate's tokens may live
        p.setJWTClaimsSetVerifier(claims);
        return p;
    }

    // actors returns the actor chain of a delegated token (RFC 8693 act, docs/delegation.md),
    // outermost first: ["payments", "orders"] for a token orders delegated to payments, which
    // delegated it on. Empty for a token a BFF exchanged. Check actors.get(0) when a service
    // must be called by one given service on the user's behalf.
    static List<String> actors(JWTClaimsSet c) throws java.text.ParseException {
        List<String> chain = new ArrayList<>();
        Map<String, Object> act = c.getJSONObjectClaim("act");
        while (act != null) {
            if (chain.size() == 10 || !(act.get("sub") instanceof String sub)) {
                throw new java.text.ParseException("malformed or too long act chain", 0);
            }
            chain.add(sub);
            Object next = act.get("act");
            if (next != null && !(next instanceof Map)) {
                throw new java.text.ParseException("malformed act chain", 0);
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) next;
            act = m;
        }
        return chain;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java -cp nimbus-jose-jwt.jar Verify.java ISSUER AUDIENCE < tokens (one a line)");
            System.exit(2);
        }
        ConfigurableJWTProcessor<SecurityContext> p = processor(args[0], args[1]);
        System.err.println("ready: verifying tokens for " + args[1] + " from " + args[0]);
        boolean allOk = true;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            String token = line.strip();
            if (token.isEmpty()) {
                continue;
            }
            try {
                JWTClaimsSet c = p.process(token, null);
                List<String> actors = actors(c);
                System.out.println("ok sub=" + c.getSubject() + " sid=" + c.getStringClaim("sid")
                        + (actors.isEmpty() ? "" : " act=" + String.join(",", actors)));
            } catch (Exception e) {
                allOk = false;
                System.out.println("refused: " + e.getClass().getSimpleName() + ": " + e.getMessage());
            }
            System.out.flush();
        }
        System.exit(allOk ? 0 : 1);
    }
}
