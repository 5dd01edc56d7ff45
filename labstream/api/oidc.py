"""OpenID Connect bearer JWTs (optional: set LABSTREAM_API_OIDC_ISSUER).

The JWT's signature is checked against the issuer's JWKS (fetched by PyJWT's
`PyJWKClient`, keys cached, fetched again for an unknown `kid`), then `iss`,
`aud` (when configured), `exp` and `nbf`. The tenant and role come from claims
the identity provider sets (`lab_tenant`, `lab_role` by default), never from the
request. Only asymmetric algorithms are accepted: an HS256 token "signed" with
the public key must not pass.
"""

from __future__ import annotations

from typing import Any

import jwt
from starlette.concurrency import run_in_threadpool

from labstream.api.auth import Principal
from labstream.api.exceptions import Unauthenticated
from labstream.api.settings import ApiSettings
from labstream.auth.tokens import Role

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class OidcVerifier:
    def __init__(self, settings: ApiSettings) -> None:
        assert settings.oidc_issuer
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.tenant_claim, self.role_claim = settings.oidc_tenant_claim, settings.oidc_role_claim
        url = settings.oidc_jwks_url or f"{self.issuer.rstrip('/')}/.well-known/jwks.json"
        self.jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)

    async def verify(self, token: str) -> Principal:
        claims = await run_in_threadpool(self._claims, token)
        try:
            role = Role(str(claims.get(self.role_claim, "")))
        except ValueError as exc:
            raise Unauthenticated(f"the JWT's {self.role_claim} claim is not a lab role",
                                  hint="scientist, viewer or operator") from exc
        tenant = claims.get(self.tenant_claim)
        if role is not Role.OPERATOR and not (isinstance(tenant, str) and tenant):
            raise Unauthenticated(f"the JWT has no {self.tenant_claim} claim",
                                  hint="the identity provider must set the caller's tenant")
        return Principal(subject=f"oidc:{claims['sub']}", role=role,
                         tenant_id=None if role is Role.OPERATOR else tenant)

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            return jwt.decode(
                token, key.key, algorithms=ALGORITHMS, issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iss", "sub"], "verify_aud": bool(self.audience)},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise Unauthenticated("the identity provider's keys could not be fetched",
                                  hint="retry; check LABSTREAM_API_OIDC_JWKS_URL") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid JWT: {exc}",
                                  hint="sign in again at the identity provider") from exc
