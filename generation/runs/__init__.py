"""What a generation run does, kind by kind: ``kinds.py`` maps each run kind to its targets and its chunks; the
modules beside it hold one kind each; ``sampling.py`` what they share. The run's life (create, claim, record,
finish) is ``generation.services.runs``."""
