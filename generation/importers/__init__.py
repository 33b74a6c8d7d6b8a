"""Imports of outside data: ``reading.py`` is the safe reading every importer shares (files, folders, archives,
limits); ``dialogues.py``, ``questions.py`` and ``courses.py`` turn what it reads into candidates."""
