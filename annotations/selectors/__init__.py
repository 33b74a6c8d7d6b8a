"""Reads of the annotations app: who sees what (``visibility``), what a page shows (``display``) and the queues
(``queues``). Selectors write nothing and never import ``annotations.services``.
"""
