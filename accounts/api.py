"""``POST /api/auth/token/``: a username and password for an API token (see docs/api.md, *Authentication*).

The password goes through ``django.contrib.auth.authenticate`` with the request, like the login form, so that
django-axes counts a failure here against the same username and address and refuses a locked-out client. A user
with two-factor sign-in gives the code from their app too (``otp``), checked by ``accounts.services.totp_verify``
like the code page's; a user whose role requires two-factor sign-in and who has not enrolled gets no token.
"""

from django.conf import settings
from django.contrib.auth import authenticate, user_logged_in
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors
from .lockout import LOCKED_OUT, locked_out_detail
from .services import OTPCodeWrong, OTPLocked, token_create, totp_verify


class TokenObtainApi(APIView):
    # No session, no token: this is where a client gets its credentials. (SessionAuthentication would also demand
    # a CSRF token from a browser that happens to be logged in.)
    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})
        otp = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=16,
            help_text="The code from the user's authenticator app; required when they have two-factor sign-in.",
        )

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expiry = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            403: inline_serializer(
                "OTPEnrolmentRequired", {"detail": serializers.CharField(), "code": serializers.CharField()}
            ),
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
                {"non_field_errors": [_("Unable to log in with the given username and password.")]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        refused = self._second_factor(user, data.validated_data.get("otp", ""))
        if refused is not None:
            return refused
        instance, raw = token_create(user=user)
        # As a form login does: axes clears the failures and logs the access, Django sets last_login.
        user_logged_in.send(sender=user.__class__, request=django_request, user=user)
        return Response(self.OutputSerializer({"token": raw, "expiry": instance.expiry}).data)

    @staticmethod
    def _second_factor(user, code: str) -> Response | None:
        """None when ``user`` may have a token as far as two-factor sign-in goes, else the answer that refuses it."""
        if selectors.totp_device_for(user=user) is None:
            if selectors.otp_enrolment_required(user=user):
                return Response(
                    {
                        "detail": _(
                            "Your role requires two-factor sign-in: add an authenticator app at /accounts/otp/ first."
                        ),
                        "code": "otp_enrolment_required",
                    },
                    status=status.HTTP_403_FORBIDDEN,
                )
            return None
        if not code:
            return Response(
                {"otp": [_("This account has two-factor sign-in: give the code from the authenticator app.")]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            totp_verify(user=user, code=code, via="token")
        except OTPLocked:
            return Response(
                {
                    "detail": _(
                        "Too many wrong two-factor codes for this account: no code is checked for %(minutes)d "
                        "minutes after the last one."
                    )
                    % {"minutes": int(settings.PSYROOM_OTP_COOLOFF.total_seconds() // 60)},
                    "code": "otp_locked",
                },
                status=LOCKED_OUT,
            )
        except OTPCodeWrong:
            return Response({"otp": [_("That code is not right.")]}, status=status.HTTP_400_BAD_REQUEST)
        return None
