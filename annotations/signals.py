"""Receivers: role changes, two-factor sign-in events, imports and run starts are audited, and a candidate
regenerated from a campaign joins that campaign.

Registered in ``AnnotationsConfig.ready``. generation/ knows nothing of campaigns: a regeneration run carries the
campaign in its target (``{"parent", "feedback", "campaign"}``), and the candidate it saves is matched here.
"""

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_save
from django.dispatch import receiver

from accounts.services import otp_event
from generation.importers.reading import imported
from generation.models import Candidate, GenerationRun
from generation.services.candidates import candidates_created
from generation.services.runs import run_created

from .models import AuditEvent, CampaignItem


def _group_names(model, pk_set) -> list[str]:
    return sorted(model.objects.filter(pk__in=pk_set or ()).values_list("name", flat=True))


@receiver(m2m_changed, sender=get_user_model().groups.through, dispatch_uid="annotations.audit_group_change")
def audit_group_change(sender, instance, action, reverse, model, pk_set, **kwargs):
    """Every change of who holds which role is in the audit trail (from either side of the relation)."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if action == "pre_clear":
        # After the clear the members are gone: record them now.
        if reverse:
            users, groups = list(instance.user_set.values_list("pk", flat=True)), [instance.name]
        else:
            users, groups = [instance.pk], sorted(instance.groups.values_list("name", flat=True))
    elif reverse:
        users, groups = sorted(pk_set or ()), [instance.name]
    else:
        users, groups = [instance.pk], _group_names(model, pk_set)
    if not groups or not users:
        return
    for user_pk in users:
        AuditEvent.objects.create(
            actor=None,
            action="permission.change",
            data={"user": user_pk, "groups": groups, "action": action.split("_", 1)[1]},
        )


@receiver(otp_event, dispatch_uid="annotations.audit_otp_event")
def audit_otp_event(sender, user, actor, action, data, **kwargs):
    """Enrolment, removal, unlocking and every refused code (accounts.services) are in the audit trail."""
    AuditEvent.objects.create(actor=actor, action=action, data={"user": user.pk, **data})


@receiver(imported, dispatch_uid="annotations.audit_import")
def audit_import(sender, kind: str, path: str, format: str, created: int, duplicates: int, files: int, **kwargs):
    """Every import that wrote is in the audit trail (from the command line: no actor)."""
    AuditEvent.objects.create(
        actor=None,
        action=f"import.{kind}",
        data={"path": path, "format": format, "created": created, "duplicates": duplicates, "files": files},
    )


@receiver(run_created, sender=GenerationRun, dispatch_uid="annotations.audit_run_created")
def audit_run_created(sender, run: GenerationRun, actor, **kwargs):
    """Every run start is in the audit trail: its kind, size, model and what it was asked to write."""
    targets = run.targets or []
    critique = any(isinstance(t, dict) and "feedback" in t for t in targets)
    AuditEvent.objects.create(
        actor=actor,
        action="run.create",
        data={
            "run": run.pk,
            "kind": run.kind,
            "count": run.count,
            "model_spec": run.model_spec.name,
            "sub_emotion": run.sub_emotion.key if run.sub_emotion else None,
            "regeneration": critique,
        },
    )


@receiver(candidates_created, sender=Candidate, dispatch_uid="annotations.join_parent_campaign_bulk")
def join_parent_campaign_bulk(sender, candidates, **kwargs):
    """Generation saves candidates with bulk_create (no post_save): the same rule for each of them."""
    for candidate in candidates:
        join_parent_campaign(sender, candidate, created=True)


@receiver(post_save, sender=Candidate, dispatch_uid="annotations.join_parent_campaign")
def join_parent_campaign(sender, instance: Candidate, created: bool, raw: bool = False, **kwargs):
    """A regenerated candidate (``parent`` set by a run whose target names a campaign) joins that campaign."""
    if not created or raw or instance.parent_id is None or instance.run_id is None:
        return
    run = instance.run
    assert run is not None  # run_id is set
    targets = run.targets or []
    for target in targets:
        if isinstance(target, dict) and target.get("parent") == instance.parent_id and target.get("campaign"):
            item, made = CampaignItem.objects.get_or_create(campaign_id=target["campaign"], candidate=instance)
            if made:
                AuditEvent.objects.create(
                    actor=None,
                    action="campaign.join",
                    candidate=instance,
                    data={"campaign": target["campaign"], "parent": instance.parent_id, "item": item.pk},
                )
            return
