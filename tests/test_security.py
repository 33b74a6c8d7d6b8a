"""HTTP hardening: the Content-Security-Policy and the templates it allows, Cache-Control on clinical pages and the
API, and ``check --deploy`` under production settings (psyroom_admin/settings.py, psyroom_admin/middleware.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.services import token_create

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def _directives(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


def _no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


# --- Content-Security-Policy ------------------------------------------------------------------------------------


def test_pages_carry_a_strict_policy(client):
    directives = _directives(client.get(reverse("login")))
    assert directives["script-src"] == "script-src 'self'"
    assert directives["style-src"] == "style-src 'self'"
    assert directives["object-src"] == "object-src 'none'"
    assert directives["frame-ancestors"] == "frame-ancestors 'none'"
    assert "unsafe" not in " ".join(directives.values())


# An inline <script>, an on...= handler or a style= attribute would be refused by that policy.
INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an on...= handler"),
    (re.compile(r"\sstyle\s*=", re.I), "a style= attribute"),
    (re.compile(r"<style", re.I), "a <style> block"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


@pytest.mark.parametrize("template", sorted((ROOT / "templates").rglob("*.html")), ids=lambda p: p.name)
def test_templates_need_no_inline_script_or_style(template):
    text = template.read_text(encoding="utf-8")
    for pattern, what in INLINE:
        match = pattern.search(text)
        assert match is None, f"{template.relative_to(ROOT)} has {what}: {match.group(0)!r}"


def test_htmx_is_configured_to_need_no_eval_and_no_inline_style(client, senior):
    client.force_login(senior)
    html = client.get(reverse("annotations:queue")).content.decode()
    assert '"allowEval": false' in html
    assert '"includeIndicatorStyles": false' in html


def test_the_api_docs_load_their_script_from_a_url(client, senior):
    client.force_login(senior)
    html = client.get(reverse("api-docs")).content.decode()
    for pattern, what in INLINE[:4]:
        assert pattern.search(html) is None, what
    script = client.get(reverse("api-docs"), {"script": ""})
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


# --- Cache-Control ----------------------------------------------------------------------------------------------


def test_a_signed_in_page_is_never_stored(client, senior, candidate):
    client.force_login(senior)
    for url in [reverse("annotations:queue"), reverse("annotations:candidate", args=[candidate.pk])]:
        response = client.get(url)
        assert response.status_code == 200
        assert _no_store(response), url
        assert "private" in response["Cache-Control"]


def test_api_answers_are_never_stored(senior, candidate):
    api = APIClient()
    assert _no_store(api.get("/api/candidates/"))  # 401
    _, key = token_create(user=senior)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = api.get(f"/api/candidates/{candidate.pk}/")
    assert response.status_code == 200
    assert _no_store(response)


def test_the_login_page_is_not_stored_either(client):
    assert _no_store(client.get(reverse("login")))


# --- Deployment settings ----------------------------------------------------------------------------------------


def test_tests_hash_passwords_fast():
    assert settings.PASSWORD_HASHERS == ["django.contrib.auth.hashers.MD5PasswordHasher"]


PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "p" * 20 + "Zq9!x-7Lm#" * 5,
    "ALLOWED_HOSTS": "psyroom.example.org",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
}


def _deploy_check(**extra) -> str:
    env = {**os.environ, **PRODUCTION_ENV, **extra}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--tag", "security"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_check_deploy_is_clean_under_production_settings():
    output = _deploy_check()
    assert "security.W004" not in output  # HSTS
    assert "security.W008" not in output  # HTTPS redirect
    # Preloading HSTS is a decision for the whole domain, off by default (SECURE_HSTS_PRELOAD=1 turns it on).
    assert re.findall(r"security\.[WE]\d+", output) == ["security.W021"], output

    output = _deploy_check(SECURE_HSTS_PRELOAD="1")
    assert "System check identified no issues" in output, output


# --- Static files with DEBUG off --------------------------------------------------------------------------------


def test_static_files_are_served_with_debug_off_after_collectstatic(tmp_path):
    with override_settings(STATIC_ROOT=tmp_path, DEBUG=False):
        call_command("collectstatic", "--noinput", verbosity=0)
        response = Client().get("/static/css/app.css")
        missing = Client().get("/static/css/no-such-file.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (ROOT / "static" / "css" / "app.css").read_bytes()
    assert "max-age" in response["Cache-Control"]
    assert missing.status_code == 404


# --- Templates ----------------------------------------------------------------------------------------------------


def test_no_template_has_a_comment_django_would_print():
    """``{# ... #}`` ends on its line: one spread over two lines is printed into the page as text."""
    open_comment = re.compile(r"\{#(?!.*#\})")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if open_comment.search(line)
    ]
    assert not found, found


def test_the_login_page_shows_no_template_syntax(client):
    page = client.get(reverse("login")).content.decode()
    assert "{#" not in page and "{%" not in page
