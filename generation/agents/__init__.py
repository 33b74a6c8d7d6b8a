"""Agents are prompts plus parsing: ``psyroom.py`` (the dialogue, plan and scenario agents, and what they share),
``course.py`` (the memory writer of courses), ``question.py`` (the answerer of questions)."""
