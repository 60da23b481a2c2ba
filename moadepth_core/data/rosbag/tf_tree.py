"""A tiny static transform tree: what ``tf2`` does for ``/tf_static``, without ROS.

Why: registering a depth camera into a colour camera needs ``T_colour_depth``, which a
RealSense bag only stores as a chain (``camera_link -> camera_depth_frame ->
camera_depth_optical_frame``, ...). ``tf2_ros`` is not installable here and the core must not
import ROS, so the chain is resolved in numpy. Only static transforms: no time interpolation.

Conventions follow tf2: an edge ``parent -> child`` holds ``T_parent_child`` (maps points in the
child frame into the parent frame), frame ids lose a leading ``/``, and a later transform for
the same child replaces the earlier one (a child has one parent).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from moadepth_core.errors import DataError
from moadepth_core.geometry import compose_transforms, invert_transform, transform_matrix


def _norm(frame: str) -> str:
    return str(frame).strip().lstrip("/")


class StaticTfTree:
    """Frames connected by rigid transforms; :meth:`lookup` chains them in either direction."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, T_parent_child)

    def add(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Add (or replace) the transform of ``child`` relative to ``parent``."""
        parent, child = _norm(parent), _norm(child)
        if not parent or not child:
            raise DataError(f"static transform {parent!r} -> {child!r} has an empty frame id")
        if parent == child:
            raise DataError(f"static transform from frame {parent!r} to itself")
        T = np.asarray(T_parent_child, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise DataError(f"static transform {parent!r} -> {child!r} is not a finite 4x4 matrix")
        self._parent[child] = (parent, T)

    def add_transform(self, parent: str, child: str, translation, quaternion_xyzw) -> None:
        """Add a geometry_msgs/Transform-style edge (translation xyz, rotation xyzw)."""
        self.add(parent, child, transform_matrix(translation, quaternion_xyzw))

    @property
    def frames(self) -> list[str]:
        """Every frame id known to the tree, sorted."""
        names = set(self._parent)
        names.update(p for p, _ in self._parent.values())
        return sorted(names)

    def __len__(self) -> int:
        return len(self._parent)

    def _neighbours(self) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Undirected adjacency: each edge stored as T_neighbour_frame."""
        adj: dict[str, list[tuple[str, np.ndarray]]] = {}
        for child, (parent, T_pc) in self._parent.items():
            adj.setdefault(child, []).append((parent, T_pc))
            adj.setdefault(parent, []).append((child, invert_transform(T_pc)))
        return adj

    def lookup(self, target: str, source: str) -> np.ndarray:
        """``T_target_source``: maps points expressed in ``source`` into ``target`` (tf2's lookupTransform)."""
        target, source = _norm(target), _norm(source)
        if target == source:
            return np.eye(4)
        adj = self._neighbours()
        for name in (target, source):
            if name not in adj:
                known = ", ".join(self.frames) or "none"
                raise DataError(f"frame {name!r} is not in the static transforms (known frames: {known})")
        # Breadth-first from source; T maps points of `source` into the current frame.
        seen = {source: np.eye(4)}
        queue = deque([source])
        while queue:
            frame = queue.popleft()
            for nxt, T_next_frame in adj[frame]:
                if nxt in seen:
                    continue
                seen[nxt] = compose_transforms(T_next_frame, seen[frame])
                if nxt == target:
                    return seen[nxt]
                queue.append(nxt)
        raise DataError(f"no chain of static transforms connects frame {source!r} to frame {target!r}")

    def can_transform(self, target: str, source: str) -> bool:
        try:
            self.lookup(target, source)
        except DataError:
            return False
        return True
