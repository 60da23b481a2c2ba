"""The package boundaries the architecture promises, checked by importing with the forbidden
modules blocked (docs/ARCHITECTURE.md): the runtime outside ``runtime/torch`` and everything on the
node's path import no torch; ``moadepth_core`` imports no ROS (test_packaging.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_BLOCKED_IMPORT = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys, traceback

    BLOCKED = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Block())
    imported, failures = [], []
    for root in {roots!r}:
        mod = importlib.import_module(root)
        imported.append(root)
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), root + "."):
            if info.name.startswith({excluded!r}) or info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
                imported.append(info.name)
            except BaseException:
                failures.append((info.name, traceback.format_exc()))
    for name, tb in failures:
        print(f"--- {{name}}\\n{{tb}}")
    print("imported", " ".join(imported))
    {after}
    sys.exit(1 if failures else 0)
    """
)


def _run_blocked(blocked: set[str], roots: list[str], excluded: tuple[str, ...], after: str = "") -> str:
    script = _BLOCKED_IMPORT.format(blocked=blocked, roots=roots, excluded=excluded, after=after)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_runtime_and_the_node_path_import_without_torch():
    """A robot's node runs the cached ONNX Runtime graph: nothing on that path may need torch."""
    after = textwrap.dedent("""
        import moadepth_core
        try:
            moadepth_core.DepthEstimator  # the torch estimator: must hit the block, proving it works
        except ModuleNotFoundError as exc:
            print("blocked:", exc.name)
    """)
    out = _run_blocked({"torch", "open_clip", "torchvision"},
                       ["moadepth_core.runtime", "moadepth_core.geometry", "moadepth_ros.node", "moadepth_ros.messages"],
                       ("moadepth_core.runtime.torch",), after)
    imported = out.split("imported ", 1)[1].splitlines()[0].split()
    for must in ("moadepth_core.runtime.loader", "moadepth_core.runtime.onnx_session", "moadepth_core.runtime.choice",
                 "moadepth_core.geometry.postprocess", "moadepth_ros.node.depth_node"):
        assert must in imported
    assert not any(name.startswith("moadepth_core.runtime.torch") for name in imported)
    assert "blocked: torch" in out


def test_the_torch_runtime_is_where_torch_is_imported():
    """The counter-check: the same block stops runtime/torch, so the test above can fail."""
    script = _BLOCKED_IMPORT.format(blocked={"torch"}, roots=["moadepth_core.runtime.torch.estimator"],
                                    excluded=(), after="")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr + proc.stdout


def test_the_package_root_gives_the_public_api():
    import moadepth_core
    from moadepth_core.model.network import build_model
    from moadepth_core.runtime.loader import load_estimator

    assert set(moadepth_core.__all__) == {"__version__", *moadepth_core._PUBLIC}
    for name in moadepth_core._PUBLIC:
        assert getattr(moadepth_core, name).__name__ == name
    assert moadepth_core.build_model is build_model and moadepth_core.load_estimator is load_estimator
    assert "Trainer" in dir(moadepth_core)
