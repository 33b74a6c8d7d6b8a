"""The audit trail: every service records what it did here, in the same transaction as the write."""

from generation.models import Candidate

from ..models import AuditEvent


def audit_record(*, actor, action: str, candidate: Candidate | None = None, data: dict | None = None) -> AuditEvent:
    return AuditEvent.objects.create(actor=actor, action=action, candidate=candidate, data=data or {})
