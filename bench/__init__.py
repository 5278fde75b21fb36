"""katcp benchmark suite: ``python -m bench`` (see bench/README.md).

Each benchmark runs katcp side by side with a minimal baseline written here
with no katcp code (:mod:`bench.baseline`), interleaved and repeated, and
reports the ratio against the issue's target.
"""
