"""Curated dataset releases: versioned, reproducible sets built from approved candidates (see docs/architecture.md,
*Releases*). Reads ``generation`` and ``annotations``; nothing imports this app back."""
