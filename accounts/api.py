"""``POST /api/auth/token/``: a username and password for an API token (see docs/api.md, *Authentication*).

The password goes through ``django.contrib.auth.authenticate`` with the request, like the login form, so that
django-axes counts a failure here against the same username and address and refuses a locked-out client.
"""

from django.contrib.auth import authenticate, user_logged_in
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .lockout import LOCKED_OUT, locked_out_detail
from .services import token_create


class TokenObtainApi(APIView):
    # No session, no token: this is where a client gets its credentials. (SessionAuthentication would also demand
    # a CSRF token from a browser that happens to be logged in.)
    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expiry = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            429: inline_serializer("LockedOut", {"detail": serializers.CharField(), "code": serializers.CharField()}),
        },
        auth=[],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # axes marks the Django request (not DRF's wrapper) when it refuses or locks out.
        django_request = request._request
        user = authenticate(
            request=django_request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if getattr(django_request, "axes_locked_out", False):
            return Response(locked_out_detail(), status=LOCKED_OUT)
        if user is None or not user.is_active:
            return Response(
                {"non_field_errors": ["Unable to log in with the given username and password."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        instance, raw = token_create(user=user)
        # As a form login does: axes clears the failures and logs the access, Django sets last_login.
        user_logged_in.send(sender=user.__class__, request=django_request, user=user)
        return Response(self.OutputSerializer({"token": raw, "expiry": instance.expiry}).data)
