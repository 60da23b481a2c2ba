"""Packaging checks: the ament_python layout colcon installs, ROS-free core imports,
one version number, the console scripts the README promises, one ROS distro per venv, and the
`ros` marker on every test module that loads ROS."""

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


# --------------------------------------------------------------------------- one ROS distro per venv


def _distro_of_this_venv() -> str:
    """The ROS distro whose ros-<distro>-rclpy wheel is installed in this venv itself (sys.prefix)."""
    prefix = os.path.realpath(sys.prefix)
    found = set()
    for dist in importlib.metadata.distributions():
        m = re.fullmatch(r"ros[-_]([a-z]+)[-_]rclpy", (dist.metadata["Name"] or "").lower())
        if m and os.path.realpath(dist.locate_file("")).startswith(prefix + os.sep):
            found.add(m.group(1))
    assert len(found) == 1, f"{sys.prefix} holds the rclpy wheels of {sorted(found) or 'no distro'}: run `make venv`"
    return found.pop()


def _ros_files_outside_this_venv() -> set[str]:
    """Files of ROS wheels visible on sys.path but installed elsewhere (.venv-kilted/ sees .venv/'s)."""
    prefix = os.path.realpath(sys.prefix)
    out = set()
    for dist in importlib.metadata.distributions():
        if not (dist.metadata["Name"] or "").lower().startswith(("ros-", "ros_")):
            continue
        for f in dist.files or []:
            path = os.path.realpath(dist.locate_file(f))
            if not path.startswith(prefix + os.sep):
                out.add(path)
    return out


_ONE_DISTRO_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    rclpy.init()
    try:
        pub_node, sub_node = rclpy.create_node("moadepth_distro_pub"), rclpy.create_node("moadepth_distro_sub")
        got = []
        sub_node.create_subscription(Image, "moadepth_distro_check", got.append, 10)
        pub = pub_node.create_publisher(Image, "moadepth_distro_check", 10)
        ex = SingleThreadedExecutor()
        ex.add_node(pub_node)
        ex.add_node(sub_node)
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            pub.publish(Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12)))
            ex.spin_once(timeout_sec=0.1)
        maps = sorted({line.split(maxsplit=5)[5].strip() for line in open("/proc/self/maps")
                       if len(line.split(maxsplit=5)) == 6 and line.split(maxsplit=5)[5].startswith("/")})
        modules = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
        print(json.dumps({"received": len(got), "rclpy": rclpy.__file__, "maps": maps, "modules": modules}))
    finally:
        rclpy.shutdown()
    """
)


@pytest.mark.ros
def test_this_venv_runs_one_ros_distro_over_dds() -> None:
    """rclpy is this venv's distro at its pinned version, and a real DDS round trip loads no ROS
    library or module of another venv (.venv-kilted/ borrows .venv/'s torch, never its ROS)."""
    import json

    distro = _distro_of_this_venv()
    pins = (REPO / f"requirements-ros-{distro}.txt").read_text()
    pinned = re.search(rf"^ros-{distro}-rclpy\[fastrtps\]==(\S+)$", pins, flags=re.M)
    assert pinned, f"requirements-ros-{distro}.txt pins no ros-{distro}-rclpy[fastrtps]"
    assert importlib.metadata.version("ros-rclpy") == pinned.group(1)

    proc = subprocess.run([sys.executable, "-c", _ONE_DISTRO_SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["received"] >= 1, "no Image crossed DDS between two nodes"
    prefix = os.path.realpath(sys.prefix) + os.sep
    assert os.path.realpath(seen["rclpy"]).startswith(prefix), seen["rclpy"]
    loaded = {os.path.realpath(p) for p in seen["maps"] + seen["modules"]}
    assert not loaded & _ros_files_outside_this_venv(), sorted(loaded & _ros_files_outside_this_venv())
    native = re.compile(r"/(librcl|librmw|libfastdds|libfastcdr|librosidl|lib\w+__rosidl_)[^/]*\.so")
    elsewhere = sorted(p for p in loaded if native.search(p) and not p.startswith(prefix))
    assert not elsewhere, f"ROS libraries loaded from outside {sys.prefix}: {elsewhere}"


# --------------------------------------------------------------------------- the `ros` marker

# Test modules that import a ROS-loading module but start no ROS: each with its reason.
ROS_MARK_EXEMPT = {
    "test_evaluate": "imports only checkpoint_file from depth_node_harness; it starts no rclpy",
}


def _imports(path: Path) -> set[str]:
    """Every module an import statement of `path` names, at any depth (lazy imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_every_test_module_that_loads_ros_is_marked_ros() -> None:
    """.ci/run runs `pytest -m ros` under the second distro: a test module that imports rclpy or ROS
    messages, itself or through moadepth_ros or a test helper, must carry the marker to be there."""
    modules = {}
    for p in (REPO / "moadepth_ros").rglob("*.py"):
        name = ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = _imports(p)
    for p in (REPO / "test").glob("*.py"):
        modules[p.stem] = _imports(p)

    def direct_ros(name: str) -> bool:
        top = name.partition(".")[0]
        return top in {"rclpy", "rcl_interfaces", "builtin_interfaces"} or top.endswith("_msgs")

    ros = {m for m, imps in modules.items() if any(direct_ros(i) for i in imps)}
    while True:
        more = {m for m, imps in modules.items() if m not in ros and imps & ros}
        if not more:
            break
        ros |= more
    unmarked = []
    for m in sorted(ros):
        path = REPO / "test" / f"{m}.py"
        if m.startswith("test_") and path.is_file() and m not in ROS_MARK_EXEMPT:
            if "pytest.mark.ros" not in path.read_text():
                unmarked.append(m)
    assert not unmarked, f"test modules that load ROS without pytest.mark.ros: {unmarked}"
    assert set(ROS_MARK_EXEMPT) <= ros, "an exemption that no longer loads ROS: drop it"
