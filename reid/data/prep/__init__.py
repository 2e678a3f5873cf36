"""Data preparation: offline tools that write datasets in a layout the runtime pipeline reads, never imported by it.

- ``mot``: re-ID crops in the Market-1501 layout from MOT-challenge tracking ground truth (``reid-mot2reid``);
- ``mot_synthetic``: generated MOT-challenge sequences with known tracks (for the tests and the README's example).
"""
