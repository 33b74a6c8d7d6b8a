"""The candidate page shows the candidate's history (annotations.selectors.visibility.candidate_history) to whoever
may see it."""

import pytest
from django.urls import reverse

from annotations.services import edits

pytestmark = pytest.mark.django_db


def test_the_candidate_page_shows_the_history_of_an_edit(client, candidate, counselor, senior):
    edits.turn_edit(
        candidate=candidate,
        editor=counselor,
        index=1,
        text="That sounds hard. What has helped before?",
        base_version=candidate.version,
        category="wording",
        reason="warmer",
    )
    client.force_login(senior)
    response = client.get(reverse("annotations:candidate", args=[candidate.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="history"' in html
    history = html[html.index('id="history"') :]
    assert "candidate.edit" in history
    assert "warmer" in history
    assert counselor.get_username() in history


def test_the_history_card_says_so_when_nothing_is_recorded(client, candidate, senior):
    client.force_login(senior)
    response = client.get(reverse("annotations:candidate", args=[candidate.pk]))
    assert response.status_code == 200
    assert "Nothing recorded yet." in response.content.decode()
