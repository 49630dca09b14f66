"""The bridge's OAuth 2.0 authorization server (RFC 6749, PKCE RFC 7636, RFC
8252 native apps, RFC 7009 revocation, RFC 7591 registration, RFC 8414
metadata) and bearer-token validation for the app API. See docs/bridge.md."""
