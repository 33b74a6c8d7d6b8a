"""Writes of the generation app: every change of a candidate goes through here, annotations' included.

candidates.py (content, revisions, risk flags), taxonomy.py and scenarios.py (reference data), modelspecs.py,
runs.py (a run's life: create, queue, claim, record, finish, resume, cancel), courses.py, questions.py. Import from
the module that owns a function; nothing is re-exported here.
"""
