"""The `Credentials` port on SSM Parameter Store, through a Powertools SSMProvider with caching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain.errors import ConfigurationError
from ..domain.providers import ProviderProfile
from ..domain.tokens import ClientCredentials

# Long enough to spare SSM on every request, short enough that a rotated secret is picked up within minutes.
CACHE_SECONDS = 300


class SsmCredentials:
    """`<prefix>/<provider>/<client_id_param>` (String) and `<prefix>/<provider>/client_secret` (SecureString).

    Each function reads only what it needs (the authorize redirect: no secret; the webhook: no client id), so
    its IAM can name only those parameters. The provider (and its cache) belongs to this object: a new
    composition root starts with an empty cache, without touching Powertools' module-level state.
    """

    def __init__(self, prefix: str, ssm_client: Callable[[], Any]) -> None:
        self._prefix = prefix
        self._ssm_client = ssm_client
        self._provider: Any = None

    def credentials(self, profile: ProviderProfile, *, with_id: bool = True, with_secret: bool = True,
                    fresh: bool = False) -> ClientCredentials:
        """The client credentials. `fresh` skips the cache: a circuit-breaker probe must see a secret the
        operator just fixed. Raises ConfigurationError when a parameter is missing (names only, never values)."""
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        provider = self._ssm()
        base = f"{self._prefix}/{profile.name}"
        try:
            client_id = provider.get(f"{base}/{profile.client_id_param}", max_age=CACHE_SECONDS,
                                     force_fetch=fresh) if with_id else ""
            secret = provider.get(f"{base}/client_secret", decrypt=True, max_age=CACHE_SECONDS,
                                  force_fetch=fresh) if with_secret else ""
        except GetParameterError as exc:
            raise ConfigurationError(f"Client credentials for {profile.name} are missing under {base}.") from exc
        return ClientCredentials(client_id=str(client_id), client_secret=str(secret))

    def forget_cached(self) -> None:
        """Drop cached values (after rotating a secret by hand in a warm container; tests)."""
        if self._provider is not None:
            self._provider.clear_cache()

    def _ssm(self) -> Any:
        if self._provider is None:
            from aws_lambda_powertools.utilities.parameters import SSMProvider  # lazy: imports boto3

            self._provider = SSMProvider(boto3_client=self._ssm_client())
        return self._provider
