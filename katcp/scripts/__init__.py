"""Command-line programs installed with katcp: ``katcp-exampleserver``, ``katcp-cmd``,
``katcp-shell`` and ``katcp-web``."""

# Each tool's one-line summary: its --help description and its line in ``python -m katcp``.
TOOLS = {
    "katcp-cmd": "Send one KATCP request to a device and print the informs and the reply.",
    "katcp-shell": "Interactive prompt connected to a KATCP device, with Tab completion.",
    "katcp-exampleserver": "Run the example KATCP device server of the tutorial.",
    "katcp-web": "Serve a live web page of a KATCP device's sensors and requests.",
}
