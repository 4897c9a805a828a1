"""oauth-keeper: connect TikTok accounts through OAuth 2.0 and keep the connections alive (the Lambda layer)."""
