"""What a user may see: which campaigns, candidates, profiles and questions, and of a candidate which reviews, names,
comments, edit authors and reasons, risk-flag details and AI scores.

Every page, template and API endpoint reads through here; templates never decide blindness, they show the rows this
module built. The rules:

- senior clinicians, curators and administrators see everything, with names;
- a counselor sees only the candidates of the campaigns they belong to (and their profiles);
- where a counselor works blind (the campaign is blind, or, outside a campaign, the candidate is in any blind
  campaign) they see only their own reviews, comments and audit events; another person's edit shows as "another
  reviewer" without its reason; another reviewer's risk flag shows its kind, not its comment; the AI supervisor's
  scores and the lineage are hidden.
"""

from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext as _

from generation import selectors as gen_selectors
from generation.models import Candidate, CandidateKind, ClientProfile, RiskFlag
from psyroom_admin import roles

from ..models import AuditEvent, Campaign, CampaignItem, Review, RiskCode
from .changes import content_changes

# Who sees every candidate and every review (with names), blind campaign or not.
SEE_ALL = (roles.SENIOR_CLINICIAN, roles.CURATOR, roles.ADMIN)
MODEL_AUTHOR = "model / import"
ANOTHER = "another reviewer"


# --- Scopes --------------------------------------------------------------------------------------------------------


def campaign_list_for(*, user) -> QuerySet[Campaign]:
    """Campaigns a user may open: counselors those they are members of; the other roles all."""
    qs = Campaign.objects.select_related("rubric").order_by("-created_at", "-id")
    if roles.user_has_role(user, *SEE_ALL):
        return qs
    if roles.user_has_role(user, roles.COUNSELOR):
        return qs.filter(members=user)
    return qs.none()


def candidate_scope(*, user, queryset: QuerySet[Candidate]) -> QuerySet[Candidate]:
    """Narrow any candidate queryset to what ``user`` may see (every page and endpoint goes through here)."""
    if roles.user_has_role(user, *SEE_ALL):
        return queryset
    if roles.user_has_role(user, roles.COUNSELOR):
        mine = CampaignItem.objects.filter(candidate_id=OuterRef("pk"), campaign__members=user)
        return queryset.filter(Exists(mine))
    return queryset.none()


def candidate_list_visible_to(*, user) -> QuerySet[Candidate]:
    return candidate_scope(user=user, queryset=gen_selectors.candidate_list())


def course_scope(*, user, kind: str) -> QuerySet[Candidate]:
    """Courses (or sessions) ``user`` may see: the campaigns' rule (``candidate_scope``), where a course is
    visible with any of its sessions and a session with its course (a campaign may hold either)."""
    every = gen_selectors.candidate_list()
    seen = candidate_scope(user=user, queryset=every).values("pk")
    related = Q(children__in=seen) if kind == CandidateKind.COURSE else Q(parent__in=seen)
    return every.filter(kind=kind).filter(Q(pk__in=seen) | related).distinct()


def profile_scope(*, user, queryset: QuerySet[ClientProfile]) -> QuerySet[ClientProfile]:
    """Client profiles a user may read: a counselor only those of the courses and sessions they may see."""
    if roles.user_has_role(user, *SEE_ALL):
        return queryset
    if roles.user_has_role(user, roles.COUNSELOR):
        seen = candidate_scope(user=user, queryset=Candidate.objects.filter(profile_id=OuterRef("pk")))
        return queryset.filter(Exists(seen))
    return queryset.none()


def campaign_works_blind(*, user, campaign: Campaign) -> bool:
    """Whether ``user`` reads ``campaign``'s reviews blind (others' names hidden): a counselor in a blind campaign."""
    return campaign.blind and not roles.user_has_role(user, *SEE_ALL)


def is_reference_for(*, user, candidate: Candidate) -> bool:
    """Whether ``candidate`` is a reference item (gold) in a campaign of ``user``'s: a counselor then reads it as a
    fresh item, blind, so that nothing on its page tells it apart from the others in the queue."""
    return CampaignItem.objects.filter(
        candidate=candidate, state=CampaignItem.State.GOLD, campaign__members=user
    ).exists()


def works_blind(*, user, candidate: Candidate, campaign: Campaign | None = None) -> bool:
    """Whether ``user`` reads ``candidate`` blind: in ``campaign`` if given, else in any blind campaign it is in; a
    counselor always reads a reference item of their campaigns blind."""
    if roles.user_has_role(user, *SEE_ALL):
        return False
    if is_reference_for(user=user, candidate=candidate):
        return True
    if campaign is not None:
        return campaign_works_blind(user=user, campaign=campaign)
    return Campaign.objects.filter(blind=True, items__candidate=candidate).exists()


# --- A candidate as one user may see it -----------------------------------------------------------------------------


@dataclass
class CandidateView:
    """What one user may see of one candidate; the pages and the API render these rows as they are."""

    blind: bool
    reviews: list[dict] = field(default_factory=list)
    revisions: list[dict] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)
    # The AI supervisor's and classifier's judgement and the lineage; empty where the user works blind.
    ai_review: dict = field(default_factory=dict)
    # The status shown (``candidate_status_for``): a counselor sees a reference item as in review.
    status: str = ""
    status_label: str = ""

    @property
    def risk(self) -> dict:
        open_flags = [f for f in self.flags if f["open"]]
        return {
            "open": bool(open_flags),
            "flags": self.flags,
            "open_flag_ids": [f["id"] for f in open_flags],
            "screened": any(f["source"] == RiskFlag.Source.SCREEN for f in open_flags),
            "reviewer_flagged": any(f["source"] == RiskFlag.Source.REVIEW for f in open_flags),
        }


def _person(user, viewer, blind: bool) -> str:
    if user is None:
        return MODEL_AUTHOR
    if blind and user.pk != viewer.pk:
        return ANOTHER
    return user.get_full_name() or user.get_username()


def _review_rows(reviews: list[Review], viewer, blind: bool) -> list[dict]:
    labels = dict(RiskCode.choices)
    rows = []
    for review in sorted(reviews, key=lambda r: (r.created_at, r.pk)):
        criteria = {c["key"]: c["label"] for c in review.rubric.criteria}
        rows.append(
            {
                "id": review.pk,
                "reviewer": _person(review.reviewer, viewer, blind),
                "own": review.reviewer_id == viewer.pk,
                "decision": review.decision,
                "decision_label": review.get_decision_display(),
                "revision": review.revision.number,
                "rubric": str(review.rubric),
                "scores": review.scores,
                "labelled_scores": [(criteria.get(key, key), score) for key, score in review.scores.items()],
                "risk_flags": review.risk_flags,
                "risk_flag_labels": [labels.get(f, f) for f in review.risk_flags],
                "comment": review.comment,
                "time_spent_s": review.time_spent_s,
                "campaign": review.campaign_id,
                "created_at": review.created_at,
            }
        )
    return rows


def reviews_visible_to(*, user, candidate: Candidate, campaign: Campaign | None = None) -> list[Review]:
    """Reviews of a candidate a user may read. Where they work blind a counselor sees only their own."""
    qs = Review.objects.filter(candidate=candidate).select_related("reviewer", "rubric", "revision")
    if campaign is not None:
        qs = qs.filter(campaign=campaign)
    if roles.user_has_role(user, *SEE_ALL):
        return list(qs)
    if not roles.user_has_role(user, roles.COUNSELOR):
        return []
    if works_blind(user=user, candidate=candidate, campaign=campaign):
        return list(qs.filter(reviewer=user))
    return list(qs)


def _flag_rows(candidate: Candidate, viewer, blind: bool) -> list[dict]:
    labels = dict(RiskCode.choices)
    rows = []
    for flag in gen_selectors.candidate_flags(candidate=candidate):
        screened = flag.source == RiskFlag.Source.SCREEN
        # The screen finds mentions; "handled badly" is a reviewer's judgement, so its label would mislead here.
        if screened and flag.code == RiskCode.SELF_HARM:
            label = _("Mentions self-harm or suicide")
        elif flag.source == RiskFlag.Source.AGENT and flag.code == RiskCode.SELF_HARM:
            # The risk agent's yes (or an answer it could not give clearly) is a possibility, not a judgement.
            label = _("Possible self-harm or suicide risk")
        elif flag.code == "inherited":
            label = _("Derived from a flagged item")
        else:
            label = str(labels.get(flag.code, flag.code))
        hidden = blind and flag.source == RiskFlag.Source.REVIEW and flag.raised_by_id != viewer.pk
        rows.append(
            {
                "id": flag.pk,
                "code": flag.code,
                "label": label,
                # Another reviewer's comment is theirs: blind, only the kind of risk shows.
                "detail": "" if hidden else flag.detail,
                # A course is gated by its sessions' flags too: say which session a flag is on.
                "on": ""
                if flag.candidate_id == candidate.pk
                else _("session %(number)s") % {"number": flag.candidate.sequence},
                "source": flag.source,
                "by": _("a reviewer") if flag.source == RiskFlag.Source.REVIEW else flag.get_source_display().lower(),
                "revision": flag.revision.number,
                "open": flag.is_open,
                "signed_off_by": _person(flag.signed_off_by, viewer, False) if flag.signed_off_by else None,
                "signed_off_at": flag.signed_off_at,
                "note": flag.note,
                "created_at": flag.created_at,
            }
        )
    return rows


def _revision_rows(candidate: Candidate, viewer, blind: bool) -> list[dict]:
    rows = []
    previous: dict | None = None
    for revision in candidate.revisions.select_related("author").order_by("number"):
        hidden = blind and revision.author_id not in (None, viewer.pk)
        # What this revision changed in the item (the content is the item's: every viewer of it may see it).
        changes = [] if previous is None else content_changes(previous, revision.content)
        previous = revision.content
        rows.append(
            {
                "number": revision.number,
                "category": revision.category,
                "category_label": revision.get_category_display(),
                "author": _person(revision.author, viewer, blind),
                "reason": "" if hidden else revision.reason,
                "base_number": revision.base_number,
                "changes": changes,
                "created_at": revision.created_at,
            }
        )
    return rows


def candidate_status_for(*, user, candidate: Candidate) -> tuple[str, str]:
    """The status (value, label) ``user`` is shown: a counselor sees a reference item as in review, as its peers in
    the queue are, rather than approved."""
    if not roles.user_has_role(user, *SEE_ALL) and is_reference_for(user=user, candidate=candidate):
        return Candidate.Status.IN_REVIEW.value, str(Candidate.Status.IN_REVIEW.label)
    return candidate.status, candidate.get_status_display()


def campaign_policy_for(*, user, campaign: Campaign) -> dict:
    """A campaign's policy as ``user`` may read it: the reference item rate only for those who mark them."""
    policy = dict(campaign.policy or {})
    if not roles.user_has_role(user, roles.CURATOR, roles.ADMIN):
        policy.pop("gold_rate", None)
    return policy


def campaign_item_counts(*, user, campaign: Campaign) -> dict[str, int]:
    """A campaign's items by state; reference items counted only for those who mark them."""
    managers = roles.user_has_role(user, roles.CURATOR, roles.ADMIN)
    states = [s for s in CampaignItem.State.values if managers or s != CampaignItem.State.GOLD]
    counts = dict.fromkeys(states, 0)
    rows = campaign.items.filter(state__in=states).values("state").order_by().annotate(n=Count("id"))
    for row in rows:
        counts[row["state"]] = row["n"]
    return counts


def candidate_view(*, user, candidate: Candidate, campaign: Campaign | None = None) -> CandidateView:
    """What ``user`` may see of ``candidate`` (in ``campaign``, on a campaign's screens)."""
    blind = works_blind(user=user, candidate=candidate, campaign=campaign)
    status, status_label = candidate_status_for(user=user, candidate=candidate)
    reviews = reviews_visible_to(user=user, candidate=candidate, campaign=campaign)
    ai_review = {}
    if not blind:
        ai_review = {**(candidate.ai_review or {}), "lineage": candidate.lineage}
    return CandidateView(
        blind=blind,
        reviews=_review_rows(reviews, user, blind),
        revisions=_revision_rows(candidate, user, blind),
        flags=_flag_rows(candidate, user, blind),
        ai_review=ai_review,
        status=status,
        status_label=status_label,
    )


def candidate_history(*, candidate: Candidate, user) -> QuerySet[AuditEvent]:
    """The audit trail of a candidate, newest first; a counselor working blind sees only their own events."""
    qs = AuditEvent.objects.filter(candidate=candidate).order_by("-created_at", "-id")
    if roles.user_has_role(user, *SEE_ALL):
        return qs
    # What marks a reference item is for those who mark them.
    qs = qs.exclude(action__startswith="gold.")
    if not roles.user_has_role(user, roles.COUNSELOR):
        return qs.none()
    if works_blind(user=user, candidate=candidate):
        return qs.filter(actor=user)
    return qs
