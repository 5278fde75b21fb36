"""Command-line programs installed with katcp: ``katcp-exampleserver``, ``katcp-cmd`` and
``katcp-shell``."""
