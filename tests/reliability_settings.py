"""Sizes of the reliability tests: small by default, large with ``KATCP_SOAK=1``.

The default suite keeps each reliability test within a few seconds; a soak run
(``KATCP_SOAK=1 python -m pytest -m reliability``) uses the figures the guarantees are stated
for.
"""

import os

SOAK = os.environ.get("KATCP_SOAK", "") not in ("", "0")


def scaled(default, soak):
    """Return the soak figure in a soak run, the default otherwise."""
    return soak if SOAK else default
