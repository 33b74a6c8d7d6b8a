"""The password policy (AUTH_PASSWORD_VALIDATORS): at least 12 characters, not common, not all digits, not like the
user's own name or address."""

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "password",
    [
        "Summer2024",  # short (and the kind of thing everybody tries)
        "password1234",  # common
        "123456789012345",  # all digits
        "abc",
    ],
)
def test_weak_passwords_are_refused(password):
    with pytest.raises(ValidationError):
        validate_password(password)


def test_a_password_like_the_username_is_refused():
    user = factories.make_user(None, username="marta.oliveira")
    with pytest.raises(ValidationError):
        validate_password("marta.oliveira1", user=user)


def test_the_minimum_length_is_twelve():
    with pytest.raises(ValidationError, match="at least 12 characters"):
        validate_password("xq7-kw2-pz9")
    validate_password("xq7-kw2-pz9m")


def test_the_test_accounts_password_passes():
    validate_password(factories.PASSWORD, user=factories.make_user(None))
