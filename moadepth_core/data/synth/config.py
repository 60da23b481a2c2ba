"""What ``moadepth synth`` renders: camera, mounting, trajectory and how many frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moadepth_core.errors import DataError


@dataclass
class SynthConfig:
    """What to render: camera, mounting, trajectory and how many frames."""

    width: int = 640
    height: int = 480
    fx: float = 525.0
    fy: float = 525.0
    cx: float | None = None  # None: image centre ((width - 1) / 2)
    cy: float | None = None
    camera_height: float = 0.6  # metres above the floor (robot mount)
    camera_pitch_deg: float = -10.0  # elevation of the optical axis; negative looks down
    free_poses: bool = False  # free 6-DoF hand-held-like poses instead of a robot mount
    frames: int = 100
    seed: int = 0
    fps: float = 10.0  # stamp rate
    speed: float = 0.5  # m/s along the path

    def K(self) -> np.ndarray:
        cx = (self.width - 1) / 2.0 if self.cx is None else self.cx
        cy = (self.height - 1) / 2.0 if self.cy is None else self.cy
        return np.array([[self.fx, 0.0, cx], [0.0, self.fy, cy], [0.0, 0.0, 1.0]])

    def validate(self) -> None:
        if self.width < 8 or self.height < 8:
            raise DataError(f"Image size {self.width}x{self.height} is too small; use at least 8x8.")
        if self.fx <= 0 or self.fy <= 0:
            raise DataError(f"Focal lengths must be positive, got fx={self.fx}, fy={self.fy}.")
        if self.frames < 1:
            raise DataError(f"--frames must be at least 1, got {self.frames}.")
        if self.fps <= 0 or self.speed < 0:
            raise DataError(f"fps must be positive and speed non-negative, got {self.fps}, {self.speed}.")
        if not 0.05 <= self.camera_height <= 2.3:
            raise DataError(f"Camera height {self.camera_height} m must lie between 0.05 and 2.3 m.")
        if not -80.0 <= self.camera_pitch_deg <= 80.0:
            raise DataError(f"Camera pitch {self.camera_pitch_deg} deg must lie between -80 and 80.")
