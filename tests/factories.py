"""factory_boy factories. Candidates are made through the services, so that they have their revision 0."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from generation.models import Candidate, CandidateKind, SubEmotion
from generation.services.candidates import candidate_create
from psyroom_admin import roles

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if extracted:
            group, _ = Group.objects.get_or_create(name=extracted)
            self.groups.add(group)
        if create:
            self.save()


def make_user(role: str | None = None, **kwargs):
    return UserFactory(role=role, **kwargs)


def counselor(**kwargs):
    return make_user(roles.COUNSELOR, **kwargs)


def dialogue_content(n_exchanges: int = 2, prefix: str = "") -> dict:
    turns = []
    for i in range(n_exchanges):
        turns.append({"role": "client", "text": f"{prefix}Client turn {i}: I have been feeling tense before exams."})
        turns.append({"role": "counselor", "text": f"{prefix}Counselor turn {i}: That sounds hard. What helps you?"})
    return {"turns": turns}


def make_candidate(
    *, content: dict | None = None, sub_emotion_key: str | None = "anxiety.1", status: str | None = None, **kwargs
) -> Candidate:
    sub_emotion = SubEmotion.objects.get(key=sub_emotion_key) if sub_emotion_key else None
    candidate = candidate_create(
        kind=CandidateKind.DIALOGUE, content=content or dialogue_content(), sub_emotion=sub_emotion, **kwargs
    )
    return set_status(candidate, status)


def set_status(candidate: Candidate, status: str | None) -> Candidate:
    """Put a candidate in a status directly, as a finished review would (an approval names the latest revision)."""
    if status:
        approved = candidate.revisions.order_by("-number").first() if status == Candidate.Status.APPROVED else None
        Candidate.objects.filter(pk=candidate.pk).update(status=status, approved_revision=approved)
        candidate.refresh_from_db()
    return candidate
