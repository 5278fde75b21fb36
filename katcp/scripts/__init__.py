"""Command-line programs installed with katcp: ``katcp-exampleserver``, ``katcp-cmd``,
``katcp-shell`` and ``katcp-web``."""
