"""Packaging checks: the ament_python layout colcon installs, ROS-free core imports,
one version number, and the console scripts the README promises."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "moadepth_ros"

# console script -> entry point; INTERFACES.md names these executables.
EXECUTABLES = {
    "moadepth": "moadepth_core.cli:main",
    "depth_node": "moadepth_ros.node.depth_node:main",
    "bag_eval": "moadepth_ros.tools.bag_eval:main",
    "bag_replay": "moadepth_ros.tools.bag_replay:main",
}

# What a colcon workspace needs from this repo (never .venv/, build/, install/, ...).
PACKAGE_CONTENT = [
    "moadepth_core",
    "moadepth_ros",
    "launch",
    "config",
    "resource",
    "setup.py",
    "setup.cfg",
    "package.xml",
    "pyproject.toml",
]

# Top-level modules moadepth_core must never need.
ROS_MODULES = [
    "rclpy",
    "rcl_interfaces",
    "sensor_msgs",
    "sensor_msgs_py",
    "std_msgs",
    "std_srvs",
    "builtin_interfaces",
    "diagnostic_msgs",
    "lifecycle_msgs",
    "rosgraph_msgs",
    "geometry_msgs",
    "cv_bridge",
    "tf2_ros",
    "ament_index_python",
]
ROS_PREFIXES = ["rosidl", "rmw"]


def _package_xml_version() -> str:
    root = ElementTree.parse(REPO / "package.xml").getroot()
    return root.findtext("version").strip()


def _source_files(folder: str) -> list[str]:
    path = REPO / folder
    return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """Environment for Debian's colcon: no trace of the project's virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    venv_bin = str(REPO / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p and p != venv_bin
    )
    env["COLCON_HOME"] = str(tmp_path / "colcon_home")
    for key in ("AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        env.pop(key, None)
    return env


# --------------------------------------------------------------------------- colcon


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory) -> Path:
    colcon = shutil.which("colcon")
    if colcon is None:
        pytest.skip(
            "colcon is not installed (`make test` installs Debian's colcon with apt-get when run as "
            "root; otherwise: apt-get install colcon python3-colcon-ros python3-ament-package)"
        )
    ws = tmp_path_factory.mktemp("colcon_ws")
    src = ws / "src" / PACKAGE
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGE_CONTENT:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, src / name)
    cmd = [
        colcon,
        "--log-base", str(ws / "log"),
        "build",
        "--base-paths", str(ws / "src"),
        "--build-base", str(ws / "build"),
        "--install-base", str(ws / "install"),
        "--event-handlers", "console_direct-",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=ws, env=_clean_env(ws), capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout}\n{proc.stderr}"
    return ws / "install" / PACKAGE


def test_colcon_installs_executables(colcon_install: Path) -> None:
    lib = colcon_install / "lib" / PACKAGE
    for name in EXECUTABLES:
        exe = lib / name
        assert exe.is_file(), (
            f"{exe} missing; lib/{PACKAGE} holds {sorted(os.listdir(lib)) if lib.is_dir() else 'nothing'}"
        )
        assert os.access(exe, os.X_OK), f"{exe} is not executable"
        assert exe.read_text().startswith("#!"), f"{exe} has no shebang"


def test_colcon_installs_share_and_index(colcon_install: Path) -> None:
    share = colcon_install / "share" / PACKAGE
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    marker = colcon_install / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    assert marker.is_file(), "ament index marker missing: `ros2 run`/`ros2 launch` would not find the package"
    for folder in ("launch", "config"):
        for name in _source_files(folder):
            assert (share / folder / name).is_file(), (
                f"{folder}/{name} not installed to share/{PACKAGE}/{folder}"
            )


def test_colcon_installs_both_python_packages(colcon_install: Path) -> None:
    site = list((colcon_install / "lib").glob("python3*/site-packages"))
    assert site, f"no site-packages under {colcon_install / 'lib'}"
    for pkg in ("moadepth_core", "moadepth_ros"):
        assert (site[0] / pkg / "__init__.py").is_file(), f"{pkg} not installed by colcon"
    # package data the node reads at run time (moadepth_ros.node.transport.PROFILE_PATH)
    assert (site[0] / "moadepth_ros" / "node" / "fastdds_large_data.xml").is_file(), "Fast DDS profile not installed"
    assert not (site[0] / "test").exists(), "the test folder must not be installed as a package"


# --------------------------------------------------------------------------- no ROS in core

_NO_ROS_SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys, traceback

    BLOCKED = set({modules!r})
    PREFIXES = tuple({prefixes!r})

    class NoROS(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in BLOCKED or top.startswith(PREFIXES):
                raise ModuleNotFoundError(f"No module named {{name!r}} (ROS is blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoROS())
    import moadepth_core

    failures = []
    def onerror(name):
        failures.append((name, traceback.format_exc()))

    names = ["moadepth_core"]
    for info in pkgutil.walk_packages(moadepth_core.__path__, "moadepth_core.", onerror=onerror):
        if info.name.rpartition(".")[2] == "__main__":  # importing it runs the program
            continue
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except BaseException:
            failures.append((info.name, traceback.format_exc()))
    for name, tb in failures:
        print(f"--- {{name}}\\n{{tb}}")
    print("imported:", len(names), "failed:", len(failures))
    sys.exit(1 if failures else 0)
    """
)


def test_core_imports_without_ros(tmp_path: Path) -> None:
    script = _NO_ROS_SCRIPT.format(modules=ROS_MODULES, prefixes=ROS_PREFIXES)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"moadepth_core needs ROS or fails to import:\n{proc.stdout}\n{proc.stderr}"


# --------------------------------------------------------------------------- version + scripts


def test_single_version_number() -> None:
    xml_version = _package_xml_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", xml_version), f"package.xml version {xml_version!r} is not X.Y.Z"
    try:
        installed = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(
            f"{PACKAGE} is not installed in {sys.prefix}: run `make venv` (pip install -e . --no-deps)"
        )
    assert installed == xml_version, (
        f"installed {PACKAGE} is {installed} but package.xml says {xml_version}: reinstall (make venv)"
    )


def test_setup_py_has_no_version_literal() -> None:
    source = (REPO / "setup.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "version":
            assert not isinstance(node.value, ast.Constant), "setup.py must read the version from package.xml"
    literal = re.search(r"""["']\d+\.\d+\.\d+["']""", source)
    assert literal is None, f"setup.py holds a version-looking literal {literal.group()}"


def test_console_scripts_declared() -> None:
    dist = importlib.metadata.distribution(PACKAGE)
    declared = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert declared == EXECUTABLES


@pytest.mark.parametrize("name", sorted(EXECUTABLES))
def test_executable_installed(name: str) -> None:
    exe = Path(sysconfig.get_path("scripts")) / name
    assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} missing: run `make venv`"
