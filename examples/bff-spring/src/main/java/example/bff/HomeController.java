package example.bff;

import jakarta.servlet.http.HttpServletRequest;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.http.MediaType;
import org.springframework.security.core.Authentication;
import org.springframework.security.core.annotation.AuthenticationPrincipal;
import org.springframework.security.oauth2.client.ClientAuthorizationException;
import org.springframework.security.oauth2.client.OAuth2AuthorizeRequest;
import org.springframework.security.oauth2.client.OAuth2AuthorizedClient;
import org.springframework.security.oauth2.client.OAuth2AuthorizedClientManager;
import org.springframework.security.oauth2.core.oidc.user.OidcUser;
import org.springframework.security.web.csrf.CsrfToken;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.client.RestClient;
import org.springframework.web.client.RestClientResponseException;
import org.springframework.web.util.HtmlUtils;

/** The one page: who is signed in, and what the service answered to the internal token. */
@RestController
public class HomeController {

	private final OAuth2AuthorizedClientManager manager;

	private final RestClient service;

	HomeController(OAuth2AuthorizedClientManager manager, @Value("${service.url}") String serviceUrl) {
		this.manager = manager;
		this.service = RestClient.create(serviceUrl);
	}

	@GetMapping(path = "/", produces = MediaType.TEXT_HTML_VALUE)
	String home(@AuthenticationPrincipal OidcUser user, Authentication authentication, HttpServletRequest request) {
		if (user == null) {
			return page("<p>Signed out.</p><a id=\"login\" href=\"/oauth2/authorization/keycloak\">Log in</a>");
		}
		String answer;
		try {
			answer = callService(internalToken(authentication));
		}
		catch (ClientAuthorizationException ex) {
			answer = "tokengate refused: " + ex.getError() + " (log in again)";
		}
		CsrfToken csrf = (CsrfToken) request.getAttribute(CsrfToken.class.getName());
		return page("<p>Signed in as <b id=\"user\">" + HtmlUtils.htmlEscape(user.getPreferredUsername()) + "</b></p>"
				+ "<p>The service answered:</p><pre id=\"answer\">" + HtmlUtils.htmlEscape(answer) + "</pre>"
				+ "<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"" + csrf.getParameterName()
				+ "\" value=\"" + csrf.getToken() + "\"><button id=\"logout\">Log out</button></form>");
	}

	/**
	 * The internal token: exchanged the first time, renewed when it expires. tokengate refuses a
	 * renewal for good once the Keycloak token it was exchanged for has expired; the manager then
	 * drops it, and one more try exchanges the current Keycloak token (renewed at Keycloak).
	 */
	private String internalToken(Authentication authentication) {
		OAuth2AuthorizeRequest request = OAuth2AuthorizeRequest.withClientRegistrationId("tokengate")
			.principal(authentication)
			.build();
		OAuth2AuthorizedClient client;
		try {
			client = this.manager.authorize(request);
		}
		catch (ClientAuthorizationException ex) {
			client = this.manager.authorize(request);
		}
		if (client == null) {
			throw new IllegalStateException("no internal token for " + authentication.getName());
		}
		return client.getAccessToken().getTokenValue();
	}

	private String callService(String token) {
		try {
			return this.service.get().headers((h) -> h.setBearerAuth(token)).retrieve().body(String.class);
		}
		catch (RestClientResponseException ex) {
			return "HTTP " + ex.getStatusCode().value() + " " + ex.getResponseBodyAsString();
		}
	}

	private static String page(String body) {
		return "<!doctype html><html><head><meta charset=\"utf-8\"><title>BFF on Spring Security</title></head><body>"
				+ body + "</body></html>";
	}

}
