"""Provider client credentials from SSM Parameter Store, through Powertools Parameters with caching."""

from __future__ import annotations

from .errors import ConfigurationError
from .oauth import ClientCredentials

# Long enough to spare SSM on every request, short enough that a rotated secret is picked up within minutes.
CACHE_SECONDS = 300


def client_credentials(
    prefix: str, provider: str, client_id_param: str, *, with_id: bool = True, with_secret: bool = True,
    fresh: bool = False,
) -> ClientCredentials:
    """`<prefix>/<provider>/<client_id_param>` (String) and `<prefix>/<provider>/client_secret` (SecureString).

    `fresh` skips the cache: a circuit-breaker probe must see a secret the operator just fixed. Each function
    reads only what it needs (the authorize redirect: no secret; the webhook: no client id), so its IAM can
    name only those parameters.
    """
    from aws_lambda_powertools.utilities import parameters  # lazy: imports boto3

    base = f"{prefix}/{provider}"
    try:
        client_id = (
            parameters.get_parameter(f"{base}/{client_id_param}", max_age=CACHE_SECONDS, force_fetch=fresh)
            if with_id
            else ""
        )
        secret = (
            parameters.get_parameter(f"{base}/client_secret", decrypt=True, max_age=CACHE_SECONDS,
                                     force_fetch=fresh)
            if with_secret
            else ""
        )
    except parameters.exceptions.GetParameterError as exc:
        # The parameter names are not secret; the values never appear in a message.
        raise ConfigurationError(f"Client credentials for {provider} are missing under {base}.") from exc
    return ClientCredentials(client_id=str(client_id), client_secret=str(secret))


def forget_cached() -> None:
    """Drop cached values (tests; after rotating a secret by hand in a warm container)."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()
