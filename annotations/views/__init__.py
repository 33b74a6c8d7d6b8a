"""The review pages: candidates (the list, a candidate, its turns, review and sign-off), campaigns (the queue, the
review screen, adjudication), courses (the timeline, memories, client profiles) and questions. Thin: each checks
access, validates with a form and calls one service.
"""
