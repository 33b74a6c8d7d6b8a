"""manage.py release build / list / verify, and their exit codes."""

import json
from io import StringIO

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError

from releases import services
from releases.models import Release
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spring.yaml"
    path.write_text("formats: [sft, sharegpt]\nsplits: {train: 1, validation: 0, test: 0, seed: 0}\n")
    return path


def run(*args) -> str:
    out = StringIO()
    call_command("release", *args, stdout=out)
    return out.getvalue()


def test_build_list_verify(taxonomy, spec_file):
    factories.make_candidate(status="approved")
    out = run("build", str(spec_file), "--version", "2.0")
    release = Release.objects.get()
    assert (release.name, release.version, release.status) == ("spring", "2.0", "ready")
    assert "sft/train.jsonl: 1 rows" in out and "train: dialogue 1" in out
    assert f"{release.pk}\tspring\t2.0\tready\t2 rows" in run("list")
    assert "intact" in run("verify", str(release.pk))
    path = services.release_dir(release) / "sharegpt" / "train.jsonl"
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(CommandError, match="sharegpt/train.jsonl: sha256"):
        run("verify", str(release.pk))
    with pytest.raises(CommandError, match="no release 999"):
        run("verify", "999")


def test_a_bad_spec_exits_naming_the_field(taxonomy, tmp_path):
    factories.make_candidate(status="approved")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"formats": ["sft"], "sub_emotions": ["joy.99"]}))
    with pytest.raises(CommandError, match="sub_emotions: unknown 'joy.99'"):
        run("build", str(bad))
    with pytest.raises(CommandError, match="No such file"):
        run("build", str(tmp_path / "missing.json"))
    assert not Release.objects.exists()


def test_a_failed_build_exits_1(taxonomy, spec_file, monkeypatch):
    factories.make_candidate(status="approved")
    monkeypatch.setattr(services, "_build_into", lambda folder, spec, **kwargs: 1 / 0)
    with pytest.raises(CommandError, match="failed: ZeroDivisionError"):
        run("build", str(spec_file))
    assert Release.objects.get().status == "failed"


def test_exit_codes_from_the_shell(taxonomy, spec_file):
    """CommandError is exit status 1 from manage.py."""
    factories.make_candidate(status="approved")
    with pytest.raises(SystemExit) as caught:
        execute_from_command_line(["manage.py", "release", "verify", "12345"])
    assert caught.value.code == 1


def test_cancel(taxonomy):
    from annotations.models import AuditEvent

    factories.make_candidate(status="approved")
    queued = services.release_create(name="queued", version="1", spec={"formats": ["sft"]}, user=None, queue=False)
    assert f"Release {queued.pk} cancelled." in run("cancel", str(queued.pk))
    queued.refresh_from_db()
    assert queued.status == Release.Status.CANCELLED
    assert AuditEvent.objects.filter(action="release.cancel", actor=None, data__release=queued.pk).exists()
    with pytest.raises(CommandError, match="only a queued or building release can be cancelled"):
        run("cancel", str(queued.pk))
    with pytest.raises(CommandError, match="no release 999"):
        run("cancel", "999")
