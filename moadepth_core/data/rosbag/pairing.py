"""Pairing images with depth by header stamp: one depth per image, the closer image wins a tie.

The index keeps only stamps and frame ids (:class:`IndexedMsg`); pixels are read later, one pair
at a time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass
class IndexedMsg:
    """An Image message in the index: header stamp, recording time (to seek it again) and frame id."""

    stamp_ns: int
    log_ns: int
    frame_id: str


def pair_by_stamp(images: list[IndexedMsg], depths: list[IndexedMsg],
                  max_time_diff_ns: int) -> tuple[list[tuple[IndexedMsg, IndexedMsg]], int]:
    """(image, depth) pairs in image stamp order, and how many depths no image took.

    Each image takes the depth with the nearest stamp within ``max_time_diff_ns``; when two images
    want the same depth, the closer one gets it. Both lists must be sorted by stamp.
    """
    dstamps = [d.stamp_ns for d in depths]
    cands = []
    for i, im in enumerate(images):
        j = nearest(dstamps, im.stamp_ns)
        if j is not None and abs(dstamps[j] - im.stamp_ns) <= max_time_diff_ns:
            cands.append((abs(dstamps[j] - im.stamp_ns), i, j))
    taken: dict[int, int] = {}
    for _, i, j in sorted(cands):
        if j not in taken:
            taken[j] = i
    pairs = sorted(((images[i], depths[j]) for j, i in taken.items()), key=lambda p: p[0].stamp_ns)
    return pairs, len(depths) - len(taken)


def nearest(sorted_vals: list[int], x: int) -> int | None:
    """Index of the value closest to ``x`` in a sorted list (None if empty)."""
    if not sorted_vals:
        return None
    j = bisect.bisect_left(sorted_vals, x)
    if j == 0:
        return 0
    if j == len(sorted_vals):
        return j - 1
    return j if sorted_vals[j] - x < x - sorted_vals[j - 1] else j - 1
