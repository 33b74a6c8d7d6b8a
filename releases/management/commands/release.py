"""``manage.py release build SPEC.yaml|json [--name N --version V]``, ``release list``, ``release verify ID``,
``release cancel ID``."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from releases import services
from releases.models import Release
from releases.spec import spec_read


def _errors(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
    return "; ".join(error.messages)


class Command(BaseCommand):
    help = "Build, list and verify dataset releases."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        build = sub.add_parser("build", help="build a release from a spec file now (not through the queue)")
        build.add_argument("spec", type=Path, help="the spec, as JSON or YAML (.yaml, .yml)")
        build.add_argument("--name", help="the release's name (default: the spec file's name)")
        build.add_argument("--version", dest="release_version", default="1", help="the release's version (default 1)")
        build.add_argument("--user", help="the curator or admin it is built for (default: none, the operator)")
        sub.add_parser("list", help="list the releases, newest first")
        verify = sub.add_parser("verify", help="recompute a release's hashes; exit 1 on a mismatch")
        verify.add_argument("id", type=int)
        cancel = sub.add_parser(
            "cancel", help="cancel a queued or building release (its build stops at its next batch)"
        )
        cancel.add_argument("id", type=int)

    def handle(self, *args, **options):
        getattr(self, f"_{options['action']}")(options)

    def _build(self, options):
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        name = options["name"] or options["spec"].stem.lower().replace(".", "-")
        try:
            spec = spec_read(options["spec"])
            release = services.release_create(
                name=name, version=options["release_version"], spec=spec, user=user, queue=False
            )
        except OSError as error:
            raise CommandError(f"{options['spec']}: {error.strerror}") from None
        except ValidationError as error:
            raise CommandError(_errors(error)) from None
        release = services.release_build(release=release)
        if release.status != Release.Status.READY:
            raise CommandError(f"release {release.pk} failed: {release.error}")
        manifest = release.manifest
        self.stdout.write(
            f"Release {release.pk}: {release.name} {release.version}, {manifest['candidates']} candidates"
        )
        for split, by_kind in manifest["counts"].items():
            figures = ", ".join(f"{kind} {sum(c.values())}" for kind, c in by_kind.items()) or "empty"
            self.stdout.write(f"  {split}: {figures}")
        if manifest["dropped"]:
            self.stdout.write("  dropped: " + ", ".join(f"{r} {n}" for r, n in manifest["dropped"].items()))
        for entry in release.files:
            self.stdout.write(f"  {entry['name']}: {entry['rows']} rows, sha256 {entry['sha256']}")
        self.stdout.write(f"  in {services.release_dir(release)}")

    def _list(self, options):
        for release in Release.objects.order_by("-id"):
            rows = sum(f["rows"] for f in release.files if f["name"].endswith(".jsonl"))  # Parquet: the same rows
            self.stdout.write(f"{release.pk}\t{release.name}\t{release.version}\t{release.status}\t{rows} rows")

    def _verify(self, options):
        release = Release.objects.filter(pk=options["id"]).first()
        if release is None:
            raise CommandError(f"no release {options['id']}")
        problems = services.release_verify(release=release)
        if problems:
            raise CommandError("\n".join(problems))
        self.stdout.write(f"Release {release.pk} is intact: {len(release.files)} files match their sha256.")

    def _cancel(self, options):
        release = Release.objects.filter(pk=options["id"]).first()
        if release is None:
            raise CommandError(f"no release {options['id']}")
        try:
            services.release_cancel(release=release, user=None)
        except ValidationError as error:
            raise CommandError(_errors(error)) from None
        self.stdout.write(f"Release {release.pk} cancelled.")
