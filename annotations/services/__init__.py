"""Writes of the annotations app: keyword-only ``noun_verb`` services that check, write in a transaction, audit.

``reviews`` (the one review path) and ``policy`` (whether reviews approve), ``queue`` (claims and releases),
``campaigns``, ``adjudication`` (and risk sign-off), ``drafts``, ``edits`` (people's edits and regeneration),
``courses``, ``questions``, ``rubrics`` and ``audit``. Candidates change only through ``generation.services``.
"""
