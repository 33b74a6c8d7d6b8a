"""Forms of the review pages: they check the shape of what was posted; the rules live in ``annotations.services``."""
