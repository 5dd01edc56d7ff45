"""Credentials for the lab API: API tokens (`labstream tokens`) and optional OIDC JWTs.

A token is `lst_<id>_<secret>`: 16 hex digits of id find its row in
labstream.api_tokens, the 43-character secret is checked against an scrypt hash of
it. The token is shown once, when it is made; nothing stored can be turned back
into it. See labstream/api/auth.py for how the API uses them.
"""
