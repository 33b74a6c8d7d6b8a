"""The catalogs are complete: every string marked in the code and the templates has a Simplified Chinese text that is
not fuzzy, and the compiled ``.mo`` files are those of the ``.po`` files.

``makemessages`` runs on a copy of the project in a temporary folder (the repository is never written), so a string
added anywhere without its translation fails here, in the fast lane (neither e2e nor fuzz). Needs GNU gettext
(``xgettext``, ``msgmerge``, ``msgfmt``), as ``makemessages`` does.
"""

import ast
import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
LOCALE = ROOT / "locale"
# What makemessages reads: the project's Python and templates. Not the tests, the benchmarks or anything installed.
SKIP = {".git", ".venv", "var", "staticfiles", "tests", "bench", "docs", "node_modules", "__pycache__", "locale"}
MAKEMESSAGES_IGNORE = ["--ignore=.venv", "--ignore=var", "--ignore=staticfiles", "--ignore=tests", "--ignore=bench"]


def _entries(path: Path) -> list[dict]:
    """The entries of a .po file: ``msgid``, ``msgid_plural``, ``msgstr`` (all forms) and whether it is fuzzy."""
    entries, current, field = [], None, None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if current is not None:
                entries.append(current)
            current, field = None, None
            continue
        if current is None:
            current = {"msgid": "", "msgid_plural": None, "msgstr": {}, "fuzzy": False, "obsolete": False}
        if line.startswith("#~"):
            current["obsolete"] = True
            continue
        if line.startswith("#,"):
            current["fuzzy"] = current["fuzzy"] or "fuzzy" in line
            continue
        if line.startswith("#"):
            continue
        match = re.match(r'(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?) (".*")$', line)
        if match:
            key, index, text = match.group(1), match.group(2), ast.literal_eval(match.group(3))
            if key.startswith("msgstr"):
                field = ("msgstr", int(index or 0))
                current["msgstr"][field[1]] = text
            else:
                field = (key, None)
                current[key] = text
        elif line.startswith('"') and field is not None:
            text = ast.literal_eval(line)
            if field[0] == "msgstr":
                current["msgstr"][field[1]] += text
            else:
                current[field[0]] = (current[field[0]] or "") + text
    return [e for e in entries if e["msgid"] and not e["obsolete"]]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """The catalogs as ``makemessages`` makes them now from the code, merged with the committed translations."""
    if not shutil.which("xgettext") or not shutil.which("msgmerge"):
        pytest.fail("GNU gettext (xgettext, msgmerge) is needed to check the catalogs: apt-get install gettext")
    copy = tmp_path_factory.mktemp("project")
    for item in ROOT.iterdir():
        if item.name in SKIP or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, copy / item.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, copy / item.name)
    shutil.copytree(LOCALE, copy / "locale")
    env = {**os.environ, "SECRET_KEY": os.environ.get("SECRET_KEY", "catalog-check")}
    command = [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "-l", "en", "--no-obsolete"]
    result = subprocess.run(
        [*command, *MAKEMESSAGES_IGNORE], cwd=copy, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return copy / "locale"


def _describe(entry: dict) -> str:
    return repr(entry["msgid"][:100])


def test_every_string_has_a_chinese_text_that_is_not_fuzzy(regenerated):
    entries = _entries(regenerated / "zh_Hans" / "LC_MESSAGES" / "django.po")
    assert len(entries) > 300  # the check read the project, not an empty folder
    untranslated = [_describe(e) for e in entries if not all(e["msgstr"].values()) or not e["msgstr"]]
    fuzzy = [_describe(e) for e in entries if e["fuzzy"]]
    assert not untranslated, "Untranslated in zh_Hans (docs/languages.md says how to add them):\n" + "\n".join(
        untranslated
    )
    assert not fuzzy, "Fuzzy in zh_Hans (check the guess, then remove the fuzzy flag):\n" + "\n".join(fuzzy)


def test_the_committed_catalogs_hold_exactly_the_strings_of_the_code(regenerated):
    """A string the code no longer has is dropped, a new one is added: run the commands in docs/languages.md."""
    for language in ("zh_Hans", "en"):
        committed = {(e["msgid"], e["msgid_plural"]) for e in _entries(LOCALE / language / "LC_MESSAGES" / "django.po")}
        current = {
            (e["msgid"], e["msgid_plural"]) for e in _entries(regenerated / language / "LC_MESSAGES" / "django.po")
        }
        assert committed == current, (
            f"{language}: missing {sorted(current - committed)[:10]}, no longer used {sorted(committed - current)[:10]}"
        )


@pytest.mark.parametrize("language", ["zh_Hans", "en"])
def test_the_compiled_catalog_is_the_po_file(tmp_path, language):
    if not shutil.which("msgfmt"):
        pytest.fail("GNU gettext (msgfmt) is needed to check the catalogs: apt-get install gettext")
    folder = LOCALE / language / "LC_MESSAGES"
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(fresh), str(folder / "django.po")], check=True, timeout=60)
    with open(folder / "django.mo", "rb") as committed, open(fresh, "rb") as compiled:
        assert gettext.GNUTranslations(committed)._catalog == gettext.GNUTranslations(compiled)._catalog, (
            f"locale/{language}/LC_MESSAGES/django.mo is stale: run `make messages` (docs/languages.md)"
        )


def test_a_placeholder_is_never_lost_in_translation():
    """msgfmt --check already refuses a missing or extra %(name)s in a python-format entry; this also covers the
    template strings, whose {{ name }} become %(name)s and must survive."""
    for entry in _entries(LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po"):
        wanted = set(re.findall(r"%\(\w+\)[sd]", entry["msgid"]))
        for text in entry["msgstr"].values():
            assert set(re.findall(r"%\(\w+\)[sd]", text)) == wanted, entry["msgid"]
