"""What ``run_create`` was given to build a run's targets from, for the targets builder of each kind."""

from dataclasses import dataclass

from ..models import Candidate, ClientProfile, Scenario, SubEmotion


@dataclass(frozen=True)
class RunInputs:
    """The items a run is asked to work from; each kind's targets builder reads the ones it needs."""

    sub_emotions: list[SubEmotion]
    scenarios: list[Scenario]
    dialogues: list[Candidate]
    questions: list[Candidate]
    profiles: list[ClientProfile]
