"""The REST API under /api/ (see docs/api.md): candidates and reviews, campaigns and their queue, courses and client
profiles; the routes are in ``urls``. Each view checks access, validates with its Input serializer and calls one
service.
"""
