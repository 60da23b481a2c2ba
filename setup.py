"""Build script for the ``moadepth_ros`` ament_python package.

Installs both Python packages (``moadepth_core``, plain PyTorch, and
``moadepth_ros``, the ROS 2 adapters) plus the ROS resource files. The version
lives only in ``package.xml`` and is read from there.
"""

from glob import glob
from pathlib import Path
from xml.etree import ElementTree

from setuptools import find_packages, setup

PACKAGE_NAME = "moadepth_ros"
HERE = Path(__file__).resolve().parent


def _package_xml_field(field: str) -> str:
    """Return the text of ``<field>`` in package.xml (the single source of the version)."""
    root = ElementTree.parse(HERE / "package.xml").getroot()
    node = root.find(field)
    if node is None or not (node.text or "").strip():
        raise RuntimeError(f"package.xml has no <{field}> element")
    return node.text.strip()


def _files(pattern: str) -> list[str]:
    """Files (not folders) matching ``pattern``, relative to this directory, sorted."""
    return sorted(p for p in glob(pattern, root_dir=HERE, recursive=True) if (HERE / p).is_file())


data_files = [
    ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
    (f"share/{PACKAGE_NAME}", ["package.xml"]),
]
for folder in ("launch", "config"):
    files = _files(f"{folder}/*")
    if files:
        data_files.append((f"share/{PACKAGE_NAME}/{folder}", files))

setup(
    name=PACKAGE_NAME,
    version=_package_xml_field("version"),
    description="MoA-DepthCLIP monocular depth estimation for ROS 2",
    license=_package_xml_field("license"),
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={"moadepth_core": ["**/*.yaml", "**/*.json"], "moadepth_ros": ["**/*.xml"]},
    data_files=data_files,
    python_requires=">=3.10",
    # Minimal on purpose: the pinned, verified set lives in requirements.txt, and ROS
    # dependencies come from package.xml (rosdep) or the ros-* wheels.
    install_requires=["numpy", "pyyaml"],
    zip_safe=True,
    maintainer="moadepth maintainers",
    maintainer_email="maintainers@moadepth.example",
    entry_points={
        "console_scripts": [
            "moadepth = moadepth_core.cli:main",
            "depth_node = moadepth_ros.node.depth_node:main",
            "bag_eval = moadepth_ros.tools.bag_eval:main",
            "bag_replay = moadepth_ros.tools.bag_replay:main",
        ],
    },
)
