"""The API's token authentication: django-rest-knox's, and the token user's profile language from then on.

A session's user is known to the middleware (``ProfileLanguageMiddleware``); a token's only here, inside the API view,
so an API error is told in the language of the user who sent the token.
"""

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication

from .middleware import activate_profile_language


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            activate_profile_language(request, result[0])
        return result


class TokenScheme(KnoxTokenScheme):
    """The schema's security scheme for this class: knox's, under the same name."""

    target_class = "accounts.auth.TokenAuthentication"
