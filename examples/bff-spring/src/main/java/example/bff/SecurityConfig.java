package example.bff;

import java.time.Duration;

import org.springframework.beans.factory.ObjectProvider;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.security.config.annotation.web.builders.HttpSecurity;
import org.springframework.security.oauth2.client.OAuth2AuthorizationContext;
import org.springframework.security.oauth2.client.OAuth2AuthorizeRequest;
import org.springframework.security.oauth2.client.OAuth2AuthorizedClient;
import org.springframework.security.oauth2.client.OAuth2AuthorizedClientManager;
import org.springframework.security.oauth2.client.RefreshTokenOAuth2AuthorizedClientProvider;
import org.springframework.security.oauth2.client.TokenExchangeOAuth2AuthorizedClientProvider;
import org.springframework.security.oauth2.client.endpoint.RestClientTokenExchangeTokenResponseClient;
import org.springframework.security.oauth2.client.oidc.web.logout.OidcClientInitiatedLogoutSuccessHandler;
import org.springframework.security.oauth2.client.registration.ClientRegistrationRepository;
import org.springframework.security.oauth2.core.OAuth2Token;
import org.springframework.security.web.SecurityFilterChain;
import org.springframework.util.LinkedMultiValueMap;
import org.springframework.util.MultiValueMap;
import org.springframework.util.StringUtils;

/**
 * Login at Keycloak (registration "keycloak"), and the internal token from tokengate
 * (registration "tokengate", grant type token-exchange). Spring Security builds the
 * OAuth2AuthorizedClientManager from the provider beans below: a token-exchange grant the first
 * time, the refresh_token grant at tokengate when the internal token expires.
 */
@Configuration
public class SecurityConfig {

	/**
	 * How long before its expiry a token counts as expired. tokengate's internal tokens live
	 * seconds (30 s by default), so Spring's default (60 s) would renew one on every call.
	 */
	static final Duration CLOCK_SKEW = Duration.ofSeconds(5);

	@Bean
	SecurityFilterChain securityFilterChain(HttpSecurity http, ClientRegistrationRepository registrations)
			throws Exception {
		OidcClientInitiatedLogoutSuccessHandler keycloakLogout = new OidcClientInitiatedLogoutSuccessHandler(
				registrations);
		keycloakLogout.setPostLogoutRedirectUri("{baseUrl}/");
		http.authorizeHttpRequests((authorize) -> authorize.requestMatchers("/", "/error").permitAll()
			.anyRequest()
			.authenticated())
			.oauth2Login((login) -> login.loginPage("/oauth2/authorization/keycloak"))
			// Logout ends the Keycloak session (RP-initiated logout); Keycloak's back-channel
			// logout to tokengate then refuses every renewal of this session's internal token.
			.logout((logout) -> logout.logoutSuccessHandler(keycloakLogout));
		return http.build();
	}

	/**
	 * RFC 8693 exchange at tokengate. The subject token is the user's Keycloak access token,
	 * taken through the manager so that an expired one is first renewed at Keycloak.
	 */
	@Bean
	TokenExchangeOAuth2AuthorizedClientProvider tokenExchange(ObjectProvider<OAuth2AuthorizedClientManager> manager,
			@Value("${tokengate.audience:}") String audience) {
		RestClientTokenExchangeTokenResponseClient client = new RestClientTokenExchangeTokenResponseClient();
		if (StringUtils.hasText(audience)) {
			// A BFF allowed to call several services names the one this token is for.
			client.addParametersConverter((grantRequest) -> {
				MultiValueMap<String, String> parameters = new LinkedMultiValueMap<>();
				parameters.add("audience", audience);
				return parameters;
			});
		}
		TokenExchangeOAuth2AuthorizedClientProvider provider = new TokenExchangeOAuth2AuthorizedClientProvider();
		provider.setAccessTokenResponseClient(client);
		provider.setClockSkew(CLOCK_SKEW);
		provider.setSubjectTokenResolver((context) -> keycloakAccessToken(manager.getObject(), context));
		return provider;
	}

	/** Renewal at tokengate (and at Keycloak) with the refresh token of the last answer. */
	@Bean
	RefreshTokenOAuth2AuthorizedClientProvider refreshToken() {
		RefreshTokenOAuth2AuthorizedClientProvider provider = new RefreshTokenOAuth2AuthorizedClientProvider();
		provider.setClockSkew(CLOCK_SKEW);
		return provider;
	}

	private static OAuth2Token keycloakAccessToken(OAuth2AuthorizedClientManager manager,
			OAuth2AuthorizationContext context) {
		OAuth2AuthorizedClient keycloak = manager.authorize(OAuth2AuthorizeRequest.withClientRegistrationId("keycloak")
			.principal(context.getPrincipal())
			.build());
		return (keycloak != null) ? keycloak.getAccessToken() : null;
	}

}
