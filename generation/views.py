"""The run console: curators start generation runs, watch their progress and cancel them.

Views stay thin: check the role, validate with the form, call one service, render.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from psyroom_admin import roles

from . import selectors
from .forms import RunForm
from .models import GenerationRun
from .services import runs as run_services

RUNS_PAGE_SIZE = 50


def _check_can_run(request: HttpRequest) -> None:
    if not roles.user_can_run_generation(request.user):
        raise PermissionDenied(_("Only curators and admins may use the run console."))


def _get_run(request: HttpRequest, pk: int) -> GenerationRun:
    _check_can_run(request)
    return get_object_or_404(selectors.run_list(), pk=pk)


def _progress(run: GenerationRun) -> dict:
    """What the progress bar shows: the status shown (``stalled`` when the worker stopped beating), percent done,
    the chunk in flight (its stage and tokens), tokens per second while it ran, the parser's counters."""
    elapsed = None
    if run.started_at:
        end = run.finished_at or timezone.now()
        elapsed = max((end - run.started_at).total_seconds(), 0.001)
    handled = run.done + run.failed
    in_flight = run.chunk_progress or {}
    completion_tokens = run.completion_tokens + in_flight.get("completion_tokens", 0)
    status = selectors.run_status(run)
    return {
        "status": status,
        "status_label": selectors.run_status_label(status),
        "stalled": status == selectors.STALLED,
        "percent": round(100 * handled / run.count) if run.count else 0,
        "handled": handled,
        "in_flight": in_flight,
        "prompt_tokens": run.prompt_tokens + in_flight.get("prompt_tokens", 0),
        "completion_tokens": completion_tokens,
        "elapsed_s": round(elapsed) if elapsed is not None else None,
        "tokens_per_s": round(completion_tokens / elapsed, 1) if elapsed else None,
        "stats": sorted(run.stats.items()),
    }


@login_required
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    _check_can_run(request)
    paginator = Paginator(selectors.run_list(), RUNS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    rows = [{"run": run, "progress": _progress(run)} for run in page.object_list]
    return render(request, "generation/run_list.html", {"page": page, "rows": rows})


@login_required
@require_http_methods(["GET", "POST"])
def run_new(request: HttpRequest) -> HttpResponse:
    _check_can_run(request)
    form = RunForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = run_services.run_create(
                kind=data["kind"],
                count=data["count"],
                sub_emotions=list(data["sub_emotions"]),
                scenarios=list(data["scenarios"]),
                dialogues=data["dialogues"],
                questions=data["questions"],
                profiles=list(data["profiles"]),
                sessions=data["sessions"],
                # A question run's model spec is the first of its answering models, when they are chosen.
                model_spec=None if data["kind"] == "question" and data["models"] else data["model_spec"],
                turns=data["turns"],
                seed=data["seed"],
                parameters=form.parameters(),
                created_by=request.user,
                language=data["language"],
            )
        except ValidationError as error:
            for message in error.messages:
                field = message.partition(":")[0]
                field = field.split(".")[-1] if field.startswith("parameters.") else field
                form.add_error(field if field in form.fields else None, message)
        except run_services.QueueUnavailable as error:
            form.add_error(None, str(error))
            return render(request, "generation/run_form.html", {"form": form}, status=503)
        else:
            messages.success(
                request,
                _("Run %(run)s queued: %(count)s × %(kind)s.")
                % {"run": run.pk, "count": run.count, "kind": run.get_kind_display().lower()},
            )
            return redirect("generation:run", pk=run.pk)
    status = 400 if form.errors else 200
    return render(request, "generation/run_form.html", {"form": form}, status=status)


@login_required
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = _get_run(request, pk)
    return render(request, "generation/run_detail.html", {"run": run, "progress": _progress(run)})


@login_required
@require_GET
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress partial that the run page polls until the run has finished."""
    run = _get_run(request, pk)
    return render(request, "generation/_run_progress.html", {"run": run, "progress": _progress(run)})


@login_required
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = _get_run(request, pk)
    try:
        run_services.run_cancel(run=run, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request,
            _("Run %(run)s cancelled: the worker stops at its next model call and saves nothing more.")
            % {"run": run.pk},
        )
    return redirect("generation:run", pk=run.pk)


@login_required
@require_POST
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue a stalled run again: what was saved is kept, the rest is generated."""
    run = _get_run(request, pk)
    try:
        run_services.run_resume(run=run, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    except run_services.QueueUnavailable as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request, _("Run %(run)s queued again: a worker goes on from the items saved.") % {"run": run.pk}
        )
    return redirect("generation:run", pk=run.pk)
