"""Event-loop plumbing shared by every katcp client and server (layer 2).

:mod:`katcp.loop.crossing` is the one way work crosses from another thread onto a loop.
"""
