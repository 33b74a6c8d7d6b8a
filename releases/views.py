"""The Releases page: curators and admins list releases, build one from a form with a live count of what it
selects, watch its build, read its manifest and card, and download its files one by one or as a zip.

Anyone else gets a 404 (``selectors.release_list_for``), as on the API. Views stay thin: the form shapes a spec,
``services`` validate, build and audit.
"""

import html
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import markdown
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from psyroom_admin import roles

from . import selectors, services
from .forms import ReleaseForm, SelectionForm
from .models import Release
from .spec import spec_validate

PAGE_SIZE = 50
ZIP_CHUNK = 1 << 20


def _check(request: HttpRequest) -> None:
    if not roles.user_has_role(request.user, *roles.RELEASE_MANAGERS):
        raise Http404("no such page")


def _release(request: HttpRequest, pk: int) -> Release:
    return get_object_or_404(selectors.release_list_for(user=request.user), pk=pk)


def _rows(release: Release) -> int:
    return sum(f["rows"] for f in release.files if f["name"].endswith(".jsonl"))


@login_required
@require_GET
def release_list(request: HttpRequest) -> HttpResponse:
    _check(request)
    page = Paginator(selectors.release_list_for(user=request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"release": r, "rows": _rows(r), "candidates": r.manifest.get("candidates")} for r in page.object_list]
    return render(request, "releases/release_list.html", {"page": page, "rows": rows})


@login_required
@require_http_methods(["GET", "POST"])
def release_new(request: HttpRequest) -> HttpResponse:
    _check(request)
    form = ReleaseForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            release = services.release_create(
                name=form.cleaned_data["name"], version=form.cleaned_data["version"], spec=form.spec(),
                user=request.user,
            )  # fmt: skip
        except ValidationError as error:
            for field, errors in error.message_dict.items():
                target = field if field in form.fields else None
                for message in errors:
                    form.add_error(target, message if target else f"{field}: {message}")
        else:
            messages.success(request, _("Release %(release)s queued.") % {"release": release})
            return redirect("release_pages:release", pk=release.pk)
    return render(request, "releases/release_form.html", {"form": form}, status=400 if form.errors else 200)


@login_required
@require_POST
def release_count(request: HttpRequest) -> HttpResponse:
    """The live count partial: what the form's spec selects, by kind (before the review thresholds and dedup)."""
    _check(request)
    form = SelectionForm(request.POST)
    context: dict = {"counts": None, "errors": []}
    if form.is_valid():
        try:
            spec = spec_validate(form.spec())
        except ValidationError as error:
            context["errors"] = [f"{f}: {m}" for f, ms in error.message_dict.items() for m in ms]
        else:
            counts = selectors.release_selection_count(spec=spec)
            context["counts"] = sorted(counts.items())
            context["total"] = sum(counts.values())
    else:
        context["errors"] = [f"{f}: {m}" for f, ms in form.errors.items() for m in ms]
    return render(request, "releases/_count.html", context)


def _card_html(release: Release) -> str:
    """The card's datasheet as HTML (the YAML header is shown as it is); its text is escaped first, so nothing in
    it (a source's attribution, say) becomes markup."""
    path = services.release_file_path(release=release, name="README.md")
    if path is None or not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    _, _, body = text.partition("\n---\n")
    renderer = markdown.Markdown(extensions=["tables", "fenced_code"])
    # No links or images from text that sources and specs wrote (a javascript: link, a tracking pixel).
    for pattern in ("link", "image_link", "reference", "image_reference", "short_reference", "short_image_ref",
                    "autolink", "automail"):  # fmt: skip
        if pattern in renderer.inlinePatterns:
            renderer.inlinePatterns.deregister(pattern)
    return renderer.convert(html.escape(body, quote=False))


FINISHED = (Release.Status.READY, Release.Status.FAILED, Release.Status.CANCELLED)


def _status_context(release: Release) -> dict:
    return {"release": release, "finished": release.status in FINISHED}


@login_required
@require_GET
def release_detail(request: HttpRequest, pk: int) -> HttpResponse:
    release = _release(request, pk)
    context = _status_context(release)
    context["card"] = _card_html(release)
    context["spec_json"] = json.dumps(release.spec, ensure_ascii=False, sort_keys=True, indent=2)
    return render(request, "releases/release_detail.html", context)


@login_required
@require_GET
def release_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The status partial the page polls until the build is ready or failed; then the page reloads once, to
    show the manifest and the card."""
    release = _release(request, pk)
    response = render(request, "releases/_status.html", _status_context(release))
    if release.status in FINISHED and request.GET.get("polling"):
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def release_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel a queued or building release: its build stops at its next batch and leaves nothing."""
    release = _release(request, pk)
    try:
        services.release_cancel(release=release, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request,
            gettext("Release %(id)s cancelled: its build stops at its next batch and leaves no files.")
            % {"id": release.pk},
        )
    return redirect("release_pages:release", pk=release.pk)


@login_required
@require_GET
def release_file(request: HttpRequest, pk: int, path: str) -> FileResponse:
    release = _release(request, pk)
    found = services.release_download(release=release, name=path, user=request.user)
    if found is None:
        raise Http404("no such file in this release")
    return FileResponse(
        found.open("rb"), as_attachment=True, filename=path.replace("/", "-"), content_type="application/octet-stream"
    )


class _Sink:
    """What zipfile writes into, emptied after each chunk: the zip is sent as it is made, never held whole."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes, /) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _zip_stream(files: list[tuple[str, int, Path]], prefix: str) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, size, path in files:
            info = zipfile.ZipInfo(f"{prefix}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = size
            with path.open("rb") as source, archive.open(info, "w") as target:
                for block in iter(lambda: source.read(ZIP_CHUNK), b""):
                    target.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


@login_required
@require_GET
def release_zip(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Every file of a ready release and its manifest, in one zip sent as it is made (recorded in the audit log)."""
    release = _release(request, pk)
    files = services.release_download_all(release=release, user=request.user)
    if files is None:
        raise Http404("this release has no files")
    prefix = f"{release.name}-{release.version}"
    response = StreamingHttpResponse(_zip_stream(files, prefix), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{prefix}.zip"'
    return response
