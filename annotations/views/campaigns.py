"""The campaign pages: curators create and follow campaigns, counselors work their queue, senior clinicians adjudicate.

The queue, the drafts, the review rules and the adjudication live in ``annotations.services``; these views check
access, validate the shape of the input with a form and call one service. The review screen is usable without
JavaScript; ``static/js/campaign.js`` adds the keyboard, the drafts and the retried submit on top.
"""

import json

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generation import selectors as gen_selectors
from generation.models import Candidate, CandidateKind
from generation.services.candidates import StaleVersion
from generation.services.runs import QueueUnavailable
from psyroom_admin import roles
from psyroom_admin.api_permissions import MAX_ID

from ..forms.reviews import IdListField, ReviewForm, SignOffForm
from ..models import Assignment, Campaign, CampaignItem, Draft, Review
from ..rubrics import DEFAULTS as RUBRICS
from ..selectors import campaigns as selection
from ..selectors import display, queues, visibility
from ..services import adjudication, campaigns, drafts, edits, queue, reviews

# A campaign member's drafts are small; anything larger is not a draft of this form.
MAX_DRAFT_BYTES = 64_000
CAMPAIGN_KINDS = [(value, label) for value, label in CandidateKind.choices if value in RUBRICS]


# --- Access -----------------------------------------------------------------------------------------------------


def _is_curator(user) -> bool:
    return roles.user_has_role(user, roles.CURATOR, roles.ADMIN)


def _check_curator(request: HttpRequest) -> None:
    if not _is_curator(request.user):
        raise PermissionDenied(_("Only curators create campaigns."))


def _check_senior(request: HttpRequest) -> None:
    if not roles.user_can_sign_off_risk(request.user):
        raise PermissionDenied(_("Only senior clinicians adjudicate."))


def _get_campaign(request: HttpRequest, campaign_id: int) -> Campaign:
    """A campaign the user may see: 403 without a role, 404 for a campaign that is not theirs (nothing is told)."""
    if not roles.user_can_see_candidates(request.user):
        raise PermissionDenied(_("You have no role in PsyRoom: ask an administrator for one."))
    return get_object_or_404(visibility.campaign_list_for(user=request.user), pk=campaign_id)


def _check_reviewer(request: HttpRequest, campaign: Campaign) -> None:
    # login_required: the user has a pk.
    member = campaign.members.filter(pk=request.user.pk).exists()  # type: ignore[misc]
    if not roles.user_can_review(request.user) or not member:
        raise PermissionDenied(_("Only the counselors of this campaign review in it."))


def _get_item_to_review(request: HttpRequest, campaign_id: int, candidate_id: int) -> tuple[Campaign, CampaignItem]:
    """The campaign and its item for one of the campaign's reviewers (403 for anyone else, 404 if not there)."""
    campaign = _get_campaign(request, campaign_id)
    _check_reviewer(request, campaign)
    item = get_object_or_404(
        CampaignItem.objects.select_related("candidate", "campaign"), campaign=campaign, candidate_id=candidate_id
    )
    return campaign, item


def _assignment_of(user, item: CampaignItem) -> Assignment | None:
    """The user's slot on this item, whatever its status (one per item and person)."""
    return Assignment.objects.filter(item=item, counselor=user).first()


def _held_assignment(user, item: CampaignItem) -> Assignment:
    assignment = _assignment_of(user, item)
    if assignment is None:
        raise Http404(_("You hold no slot on this item."))
    return assignment


# --- Forms ------------------------------------------------------------------------------------------------------


def _is_id_text(text: str) -> bool:
    """ASCII digits of an id (at most 18, within a 64-bit id): "¹".isdigit() is true, and int() refuses it."""
    return text.isascii() and text.isdigit() and len(text) <= 18


# The filter pickers carry this class: the live count (hx-include) sends what they hold.
_FILTER = {"class": "campaign-filter"}


class CampaignFilterForm(forms.Form):
    """Which candidates a campaign is made of, as pickers: what the campaign form and its live count both read."""

    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"),
        choices=CAMPAIGN_KINDS,
        initial=CandidateKind.DIALOGUE,
        widget=forms.Select(attrs=_FILTER),
    )
    sub_emotions = forms.MultipleChoiceField(
        label=gettext_lazy("Sub-emotions"),
        required=False,
        widget=forms.SelectMultiple(attrs={**_FILTER, "size": 10}),
        help_text=gettext_lazy("Any sub-emotion when none is chosen (Ctrl or Shift + click chooses several)"),
    )
    scenarios = forms.MultipleChoiceField(
        label=gettext_lazy("Scenarios"),
        required=False,
        widget=forms.SelectMultiple(attrs={**_FILTER, "size": 8}),
        help_text=gettext_lazy("Any scenario when none is chosen"),
    )
    run = forms.ChoiceField(
        label=gettext_lazy("Run"),
        required=False,
        widget=forms.Select(attrs=_FILTER),
        help_text=gettext_lazy("Only candidates of this run"),
    )
    sources = forms.MultipleChoiceField(
        label=gettext_lazy("Sources"),
        required=False,
        widget=forms.SelectMultiple(attrs={**_FILTER, "size": 4}),
        help_text=gettext_lazy("Only candidates imported from these datasets"),
    )
    status = forms.ChoiceField(
        label=gettext_lazy("Status"),
        required=False,
        choices=[("", gettext_lazy("Any status (what waits for review)")), *Candidate.Status.choices],
        widget=forms.Select(attrs=_FILTER),
    )

    # The newest runs offered in the picker; an older one is still taken by an uploaded id list.
    RUNS_OFFERED = 200

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        groups: dict[str, list[tuple[str, str]]] = {}
        for sub_emotion in gen_selectors.sub_emotion_list():
            groups.setdefault(str(sub_emotion.category), []).append(
                (sub_emotion.key, f"{sub_emotion.key} · {sub_emotion.label_en} · {sub_emotion.label_zh}")
            )
        self.fields["sub_emotions"].choices = list(groups.items())
        self.fields["scenarios"].choices = [
            (str(s.pk), f"{s.sub_emotion.key} · {s.title} (#{s.pk})") for s in gen_selectors.scenario_list()
        ]
        runs = gen_selectors.run_list()[: self.RUNS_OFFERED]
        self.fields["run"].choices = [
            ("", gettext_lazy("Any run")),
            *[(str(r.pk), f"#{r.pk} · {r.kind} · {r.status} · {r.created_at:%Y-%m-%d %H:%M}") for r in runs],
        ]
        self.fields["sources"].choices = [(d, d) for d in gen_selectors.source_dataset_list()]

    def clean_scenarios(self) -> list[int]:
        return [int(pk) for pk in self.cleaned_data["scenarios"]]

    def clean_run(self) -> int | None:
        return int(self.cleaned_data["run"]) if self.cleaned_data["run"] else None

    def filters(self) -> dict:
        """The chosen filters as ``campaigns.campaign_filters_validate`` takes them."""
        data = self.cleaned_data
        chosen = {name: data[name] for name in ("sub_emotions", "scenarios", "run", "sources", "status")}
        return {name: value for name, value in chosen.items() if value}


class CampaignForm(CampaignFilterForm):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    id_file = forms.FileField(
        label=gettext_lazy("Id file"),
        required=False,
        help_text=gettext_lazy("Or a text file of candidate ids, one a line"),
    )
    overlap = forms.IntegerField(
        label=gettext_lazy("Overlap"),
        min_value=1,
        max_value=10,
        initial=2,
        help_text=gettext_lazy("k: counselors per item"),
    )
    members = forms.ModelMultipleChoiceField(
        label=gettext_lazy("Members"),
        queryset=get_user_model().objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    guidelines = forms.CharField(
        label=gettext_lazy("Guidelines"), required=False, widget=forms.Textarea(attrs={"rows": 8}), help_text="Markdown"
    )
    blind = forms.BooleanField(
        label=gettext_lazy("Blind"),
        required=False,
        initial=True,
        help_text=gettext_lazy("Hide the AI supervisor and other reviews"),
    )
    min_approvals = forms.IntegerField(
        label=gettext_lazy("Minimum approvals"),
        required=False,
        min_value=1,
        help_text=gettext_lazy("Approvals needed (default: k)"),
    )
    min_mean = forms.FloatField(
        label=gettext_lazy("Minimum mean"),
        required=False,
        min_value=1,
        max_value=5,
        initial=3.0,
        help_text=gettext_lazy("Each criterion's mean must reach this"),
    )
    lease_minutes = forms.IntegerField(
        label=gettext_lazy("Lease (minutes)"), min_value=1, max_value=24 * 60, initial=30
    )
    # The range is the service's rule (policy.campaign_policy_validate), which names a bad value.
    gold_rate = forms.FloatField(
        required=False,
        initial=0.0,
        label=gettext_lazy("Reference item rate"),
        help_text=gettext_lazy("Share of each counselor's queue given to reference items (0 to 0.5)"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["members"].queryset = (
            get_user_model()
            .objects.filter(is_active=True, groups__name__in=roles.REVIEWERS)
            .distinct()
            .order_by("username")
        )
        self.fields["members"].label_from_instance = lambda user: (
            f"{user.get_full_name() or user.get_username()}"
            f" ({', '.join(sorted(roles.user_roles(user) & set(roles.REVIEWERS))).replace('_', ' ')})"
        )

    @staticmethod
    def _split(value: str) -> list[str]:
        return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]

    def clean_id_file(self) -> list[int] | None:
        upload = self.cleaned_data.get("id_file")
        if not upload:
            return None
        try:
            text = upload.read(1_000_000).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(_("the id list must be a UTF-8 text file")) from None
        parts = self._split(text)
        bad = [p for p in parts if not _is_id_text(p)]
        if bad:
            raise ValidationError(_("lines that are not candidate ids: %(ids)s") % {"ids": ", ".join(bad[:10])})
        if not parts:
            raise ValidationError(_("the id list is empty"))
        return [int(p) for p in parts]

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        policy = {"min_mean": data["min_mean"] if data["min_mean"] is not None else 3.0, "no_risk": True}
        if data["min_approvals"]:
            policy["min_approvals"] = data["min_approvals"]
        if data["gold_rate"] is not None:
            policy["gold_rate"] = data["gold_rate"]
        filters = self.filters()
        return {
            "name": data["name"],
            "kind": data["kind"],
            "overlap": data["overlap"],
            "members": list(data["members"]),
            "guidelines": data["guidelines"],
            "blind": data["blind"],
            "policy": policy,
            "lease_seconds": data["lease_minutes"] * 60,
            "filters": None if data["id_file"] else filters,
            "candidate_ids": data["id_file"],
        }


class CampaignReviewForm(ReviewForm):
    """The review form of a campaign item: the campaign's rubric, the client's idempotency key and measured time."""

    idempotency_key = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    time_spent_s = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)


class AdjudicationForm(forms.Form):
    decision = forms.ChoiceField(choices=Review.Decision.choices, widget=forms.RadioSelect)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=10_000)
    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput(attrs={"class": "candidate-version"}))
    flags = IdListField(required=False)


class CritiqueForm(forms.Form):
    critique = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5_000)


def _add_service_errors(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, field_errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, field_errors)
    else:
        form.add_error(None, error.messages)


# --- Reads for the pages ----------------------------------------------------------------------------------------


def _progress(campaign: Campaign) -> dict:
    # Reference items are outside the k slots and the work's count (and not for counselors to count).
    items = list(campaign.items.exclude(state=CampaignItem.State.GOLD).values_list("state", "reviews_done"))
    return {
        "items": len(items),
        "reviews_done": sum(done for _, done in items),
        "reviews_needed": len(items) * campaign.overlap,
        "adjudication": sum(1 for state, _ in items if state == CampaignItem.State.ADJUDICATION),
        "decided": sum(1 for state, _ in items if state == CampaignItem.State.DECIDED),
    }


def _history(request: HttpRequest, candidate: Candidate, campaign: Campaign):
    return visibility.candidate_history(candidate=candidate, user=request.user, campaign=campaign).select_related(
        "actor"
    )[:50]


# What _item_context is told when the caller does not know whether the candidate has a plan.
_UNKNOWN = object()


def _item_context(request: HttpRequest, campaign: Campaign, item: CampaignItem, *, plan_id=_UNKNOWN) -> dict:
    candidate = item.candidate
    context = display.fragments_context(request.user, candidate, campaign)
    risk = context["risk"]
    plans = candidate.children.filter(kind=CandidateKind.PLAN).order_by("-created_at")
    context.update(
        {
            "campaign": campaign,
            "item": item,
            "turns": display.turn_rows(candidate, original=context["original_content"]),
            "history": _history(request, candidate, campaign),
            # A warning precedes what the screen or a reviewer flagged, signed off or not: the text is the same.
            "content_warning": bool(risk["flags"]),
            "approve_blocked": risk["open"],
            # A plan is read beside its dialogue (its parent); a dialogue shows its newest plan, if it has one.
            "plan": (plans.first() if plan_id is _UNKNOWN else plans.filter(pk=plan_id).first() if plan_id else None)
            if candidate.kind == CandidateKind.DIALOGUE
            else None,
            "parent_turns": display.turn_rows(candidate.parent)  # type: ignore[arg-type]  # parent_id is checked
            if candidate.kind == CandidateKind.PLAN and candidate.parent_id
            else [],
            # What a course or question campaign rates: the course's profile, sessions and memories; the question's
            # stem, options, key and the models' rationales. This is content, the same blind or not; who said what
            # about it (reviews, edit reasons, the AI supervisor) still comes only from fragments_context.
            "course": display.course_rows(candidate) if candidate.kind == CandidateKind.COURSE else None,
            "question": display.question_rows(candidate) if candidate.kind == CandidateKind.QUESTION else None,
        }
    )
    return context


# --- Campaigns --------------------------------------------------------------------------------------------------


@login_required
@require_GET
def campaign_list(request: HttpRequest) -> HttpResponse:
    if not roles.user_can_see_candidates(request.user):
        raise PermissionDenied(_("You have no role in PsyRoom: ask an administrator for one."))
    rows = [
        {"campaign": c, "progress": _progress(c)}
        for c in visibility.campaign_list_for(user=request.user).select_related("rubric", "created_by")
    ]
    return render(
        request,
        "annotations/campaign_list.html",
        {"rows": rows, "can_create": _is_curator(request.user), "can_review": roles.user_can_review(request.user)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def campaign_create(request: HttpRequest) -> HttpResponse:
    _check_curator(request)
    form = CampaignForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            campaign = campaigns.campaign_create(creator=request.user, **form.service_kwargs())
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            count = campaign.items.count()
            messages.success(
                request,
                ngettext(
                    "Campaign “%(name)s” created with %(count)d item.",
                    "Campaign “%(name)s” created with %(count)d items.",
                    count,
                )
                % {"name": campaign.name, "count": count},
            )
            return redirect("annotations:campaign_list")
    status = 400 if request.method == "POST" else 200
    return render(request, "annotations/campaign_form.html", {"form": form}, status=status)


@login_required
@require_GET
def campaign_selection_count(request: HttpRequest) -> HttpResponse:
    """How many candidates the campaign form's filters select now: the same checks and the same selector as
    ``campaign_create``, so the count is what the campaign would hold (an HTMX fragment, updated as filters change)."""
    _check_curator(request)
    form = CampaignFilterForm(request.GET)
    errors: list[str] = []
    count = None
    if not form.is_valid():
        errors = [f"{form.fields[name].label or name}: {' '.join(map(str, e))}" for name, e in form.errors.items()]
    else:
        try:
            filters = campaigns.campaign_filters_validate(filters=form.filters())
        except ValidationError as error:
            errors = [" ".join(messages_) for messages_ in error.message_dict.values()]
        else:
            count = selection.campaign_selection(kind=form.cleaned_data["kind"], filters=filters).count()
    context = {"count": count, "errors": errors}
    return render(request, "annotations/_campaign_count.html", context, status=400 if errors else 200)


@login_required
@require_GET
def campaign_guidelines(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _get_campaign(request, campaign_id)
    return render(request, "annotations/campaign_guidelines.html", {"campaign": campaign})


# --- The review screen ------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def campaign_next(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """POST: claim the next item (or hand back the one already claimed) and go to it. GET changes nothing: it goes to
    the counselor's current claim if they hold one, else shows the **Review next** button (a form that POSTs here),
    or says that the queue is empty.

    Claiming is a POST so that a link from another site (a GET) cannot take an item for a logged-in counselor.
    """
    campaign = _get_campaign(request, campaign_id)
    _check_reviewer(request, campaign)
    if request.method == "POST":
        assignment = queue.queue_claim_next(campaign=campaign, counselor=request.user)
    else:
        assignment = queues.queue_current_claim(campaign=campaign, counselor=request.user)
        if assignment is None and queues.queue_peek_next(campaign=campaign, counselor=request.user) is not None:
            return render(
                request, "annotations/campaign_next.html", {"campaign": campaign, "progress": _progress(campaign)}
            )
    if assignment is None:
        return render(
            request, "annotations/campaign_done.html", {"campaign": campaign, "progress": _progress(campaign)}
        )
    return redirect("annotations:campaign_item", campaign_id=campaign.pk, candidate_id=assignment.item.candidate_id)


@login_required
@require_GET
def campaign_item(request: HttpRequest, campaign_id: int, candidate_id: int) -> HttpResponse:
    if not (campaign_id <= MAX_ID and candidate_id <= MAX_ID):
        raise Http404("No such item.")  # a number past any id would overflow the database's integer, not miss
    # The page a counselor works at all day: their claim and what the page shows of it in one query. Anything else
    # (not a member, no claim, no such item) takes the path below, which answers 403, 404 or "not in your queue".
    if roles.user_can_review(request.user):
        held = queues.desk_claim(campaign_id=campaign_id, candidate_id=candidate_id, counselor=request.user)
        if held is not None and held.assignment.status == Assignment.Status.CLAIMED:
            saved_at = held.draft_saved_at
            draft = {
                "data": dict(held.draft_data or {}),
                "saved_at": int(saved_at.timestamp() * 1000) if saved_at else None,
            }
            item = held.assignment.item
            return _render_item(request, item.campaign, item, held.assignment, draft=draft, plan_id=held.plan_id)
    campaign, item = _get_item_to_review(request, campaign_id, candidate_id)
    assignment = _assignment_of(request.user, item)
    if assignment is None or assignment.status != Assignment.Status.CLAIMED:
        # Not (or no longer) this counselor's to review: the queue decides what they get next.
        messages.info(request, _("%(item)s is not in your queue now.") % {"item": item.candidate})
        return redirect("annotations:campaign_list")
    return _render_item(request, campaign, item, assignment)


def _server_draft(user, candidate) -> dict:
    """The reviewer's saved draft of this item and when it was saved (ms), so that the page keeps the newer of this
    and the browser's own copy."""
    draft = Draft.objects.filter(user=user, candidate=candidate).only("data", "updated_at").first()
    if draft is None:
        return {"data": {}, "saved_at": None}
    return {"data": dict(draft.data), "saved_at": int(draft.updated_at.timestamp() * 1000)}


def _render_item(
    request, campaign, item, assignment, *, form=None, stale=False, status=200, draft=None, plan_id=_UNKNOWN
) -> HttpResponse:
    candidate = item.candidate
    if form is None:
        # One key per item and person, the same after a reload or on another device: a retried submit of this item
        # is recognised by the service and recorded once.
        initial = {"version": candidate.version, "idempotency_key": f"assignment-{assignment.pk}"}
        form = CampaignReviewForm(rubric=campaign.rubric, initial=initial)
    peek = queues.queue_peek_next(campaign=campaign, counselor=request.user)
    context = {
        **_item_context(request, campaign, item, plan_id=plan_id),
        "assignment": assignment,
        "review_form": form,
        "rubric": campaign.rubric,
        "peek": peek,
        "stale": stale,
        "critique_form": CritiqueForm(),
        "server_draft": _server_draft(request.user, candidate) if draft is None else draft,
        "draft_key": f"psyroom-draft:{campaign.pk}:{candidate.pk}:{request.user.pk}",
    }
    return render(request, "annotations/campaign_review.html", context, status=status)


@login_required
@require_GET
def campaign_item_preview(request: HttpRequest, campaign_id: int, candidate_id: int) -> HttpResponse:
    """The turns of an item, read-only: what the review screen prefetches for the item "next" will give."""
    campaign, item = _get_item_to_review(request, campaign_id, candidate_id)
    response = render(request, "annotations/campaign_preview.html", _item_context(request, campaign, item))
    response["Cache-Control"] = "private, max-age=300"
    return response


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@login_required
@require_POST
def campaign_submit(request: HttpRequest, campaign_id: int, candidate_id: int) -> HttpResponse:
    """Record the review; JSON for the page's script (which retries), a redirect to the next item otherwise."""
    campaign, item = _get_item_to_review(request, campaign_id, candidate_id)
    assignment = _held_assignment(request.user, item)
    form = CampaignReviewForm(request.POST, rubric=campaign.rubric)
    error_status = 400
    if form.is_valid():
        try:
            review = reviews.review_submit(
                candidate=item.candidate,
                assignment=assignment,
                reviewer=request.user,
                scores=form.scores(),
                decision=form.cleaned_data["decision"],
                comment=form.cleaned_data["comment"],
                risk_flags=form.cleaned_data["risk_flags"],
                base_version=form.cleaned_data["version"],
                time_spent_s=form.cleaned_data["time_spent_s"] or 0,
                idempotency_key=form.cleaned_data["idempotency_key"] or None,
            )
        except StaleVersion as stale:
            data = request.POST.copy()
            data["version"] = str(stale.candidate.version)
            form = CampaignReviewForm(data, rubric=campaign.rubric)
            form.is_valid()
            form.add_error(None, "The item changed while you were reviewing it: read it again, then submit.")
            item.candidate = stale.candidate
            error_status = 409
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            next_url = reverse("annotations:campaign_next", args=[campaign.pk])
            if _wants_json(request):
                return JsonResponse({"review": review.pk, "next": next_url})
            messages.success(request, _("Review of %(item)s saved.") % {"item": item.candidate})
            return redirect(next_url)
    if _wants_json(request):
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        return JsonResponse({"errors": errors}, status=error_status)
    return _render_item(request, campaign, item, assignment, form=form, stale=error_status == 409, status=error_status)


@login_required
@require_http_methods(["GET", "POST"])
def campaign_draft(request: HttpRequest, campaign_id: int, candidate_id: int) -> HttpResponse:
    """GET: the saved draft. POST (a JSON object): save it, so that nothing typed is lost with the tab."""
    campaign, item = _get_item_to_review(request, campaign_id, candidate_id)
    if request.method == "GET":
        return JsonResponse({"data": drafts.draft_get(user=request.user, candidate=item.candidate) or {}})
    if len(request.body) > MAX_DRAFT_BYTES:
        return JsonResponse(
            {"errors": {"data": [_("a draft is at most %(limit)d bytes") % {"limit": MAX_DRAFT_BYTES}]}}, status=400
        )
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"errors": {"data": ["not JSON"]}}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"errors": {"data": ["a draft is a JSON object"]}}, status=400)
    try:
        draft = drafts.draft_save(user=request.user, candidate=item.candidate, data=data)
    except ValidationError as error:
        return JsonResponse({"errors": {"data": error.messages}}, status=400)
    return JsonResponse({"saved_at": draft.updated_at.isoformat()})


@login_required
@require_POST
def campaign_release(request: HttpRequest, campaign_id: int, candidate_id: int) -> HttpResponse:
    """Skip: give the slot back to the queue and take the next item."""
    campaign, item = _get_item_to_review(request, campaign_id, candidate_id)
    assignment = _held_assignment(request.user, item)
    try:
        queue.assignment_release(assignment=assignment, counselor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.info(request, _("%(item)s skipped.") % {"item": item.candidate})
    return redirect("annotations:campaign_next", campaign_id=campaign.pk)


@login_required
@require_POST
def campaign_regenerate(request: HttpRequest, campaign_id: int, candidate_id: int) -> HttpResponse:
    campaign, item = _get_item_to_review(request, campaign_id, candidate_id)
    form = CritiqueForm(request.POST)
    back = reverse("annotations:campaign_item", args=[campaign.pk, item.candidate_id])
    if not form.is_valid():
        messages.error(request, _("Say what the new version should do better: a critique is required."))
        return redirect(back)
    try:
        run = edits.candidate_regenerate_with_critique(
            candidate=item.candidate, reviewer=request.user, critique=form.cleaned_data["critique"], campaign=campaign
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    except QueueUnavailable as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request, _("Regeneration queued as run #%(run)s: the new version joins this campaign.") % {"run": run.pk}
        )
    return redirect(back)


# --- Adjudication -----------------------------------------------------------------------------------------------


@login_required
@require_GET
def adjudication_list(request: HttpRequest) -> HttpResponse:
    _check_senior(request)
    items = queues.adjudication_queue(clinician=request.user).select_related("candidate", "campaign")
    return render(request, "annotations/campaign_adjudication_list.html", {"items": items})


def _get_adjudication_item(request: HttpRequest, item_id: int) -> CampaignItem:
    _check_senior(request)
    return get_object_or_404(
        CampaignItem.objects.select_related("candidate", "campaign", "campaign__rubric"), pk=item_id
    )


def _render_adjudication(request, item, *, form=None, sign_off_form=None, status=200) -> HttpResponse:
    campaign = item.campaign
    context = {
        **_item_context(request, campaign, item),
        "form": form or AdjudicationForm(initial={"version": item.candidate.version}),
        "sign_off_form": sign_off_form or SignOffForm(),
    }
    # The reviews side by side: one row per criterion, one column per review.
    context["matrix"] = [
        {"label": c["label"], "scores": [row["scores"].get(c["key"]) for row in context["reviews"]]}
        for c in campaign.rubric.criteria
    ]
    return render(request, "annotations/campaign_adjudicate.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def adjudication_item(request: HttpRequest, item_id: int) -> HttpResponse:
    item = _get_adjudication_item(request, item_id)
    if request.method == "GET":
        return _render_adjudication(request, item)
    form = AdjudicationForm(request.POST)
    if form.is_valid():
        try:
            adjudication.adjudicate(
                item=item,
                clinician=request.user,
                decision=form.cleaned_data["decision"],
                reason=form.cleaned_data["reason"],
                base_version=form.cleaned_data["version"],
                flag_ids=form.cleaned_data["flags"],
            )
        except StaleVersion as stale:
            item.candidate = stale.candidate
            form = AdjudicationForm({**request.POST.dict(), "version": stale.candidate.version})
            form.is_valid()
            form.add_error(None, _("The item changed since you opened it: read it again, then decide."))
            return _render_adjudication(request, item, form=form, status=409)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            decision = Review.Decision(form.cleaned_data["decision"]).label
            messages.success(request, _("%(item)s: %(decision)s.") % {"item": item.candidate, "decision": decision})
            return redirect("annotations:adjudication_list")
    return _render_adjudication(request, item, form=form, status=400)


@login_required
@require_POST
def adjudication_sign_off(request: HttpRequest, item_id: int) -> HttpResponse:
    item = _get_adjudication_item(request, item_id)
    form = SignOffForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            adjudication.risk_sign_off(
                candidate=item.candidate,
                clinician=request.user,
                note=form.cleaned_data["note"],
                flag_ids=form.cleaned_data["flags"],
                base_version=form.cleaned_data["version"],
            )
        except StaleVersion as stale:
            item.candidate = stale.candidate
            form.add_error(None, "The item changed since you read it: read it again, then sign off.")
            status = 409
        except ValidationError as error:
            _add_service_errors(form, error)
    if form.errors:
        return _render_adjudication(request, item, sign_off_form=form, status=status)
    messages.success(request, _("Risk flags of %(item)s signed off.") % {"item": item.candidate})
    return redirect("annotations:adjudication_item", item_id=item.pk)
