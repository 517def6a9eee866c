#!/usr/bin/env bash
# Creates .venv with a CPU build of PyTorch, the package and its extras. Idempotent.
#   XMODAL_PYTHON       interpreter to use (default: python3.11, the ROS 2 wheels need it, else python3)
#   XMODAL_EXTRAS       pip extras (default: ros,onnx,bench,test,fuzz,registration)
#   XMODAL_ROS_SOURCES  tarball of the ROS 2 Python tooling sources (launch, launch_ros), default
#                       ../shared/ros/ros2-python-jazzy-src.tar.gz beside the checkout; installed when present
#   XMODAL_JAZZY        1 (default when the ros extra is installed): also create .venv-jazzy, the same
#                       environment with the ROS 2 Jazzy rclpy instead of Kilted (test/run_jazzy.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${XMODAL_PYTHON:-$(command -v python3.11 || command -v python3)}
extras=${XMODAL_EXTRAS:-ros,onnx,bench,test,fuzz,registration}
ros_sources=${XMODAL_ROS_SOURCES:-../shared/ros/ros2-python-jazzy-src.tar.gz}
# The Jazzy wheels (ros-jazzy-* pin ros-rclpy 7.1.6 and the matching message packages).
jazzy_wheels=(ros-jazzy-rclpy ros-jazzy-std-msgs ros-jazzy-sensor-msgs ros-jazzy-diagnostic-msgs
              ros-jazzy-rmw-fastrtps-cpp ros-jazzy-lifecycle-msgs ros-jazzy-ament-index-python)

# pip repeats a harmless warning for every package a local index lacks; keep its real errors.
quiet() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }

if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
quiet .venv/bin/pip install -q "torch==2.13.0"
quiet .venv/bin/pip install -q -e ".[${extras}]" "torch==2.13.0"

# launch and launch_ros are not on PyPI: their pure-Python sources, as a ROS workspace builds them.
# The tests substitute composition_interfaces (a message package launch_ros imports): test/ros/stubs.
if [[ ",$extras," == *,ros,* ]] && [ -f "$ros_sources" ]; then
    src=.venv/src/ros2-python
    mkdir -p "$src"
    tar -xzf "$ros_sources" -C "$src"
    quiet .venv/bin/pip install -q osrf-pycommon
    quiet .venv/bin/pip install -q --no-deps "$src/launch/launch" "$src/launch_ros/launch_ros"
    if [ "${XMODAL_JAZZY:-1}" = 1 ]; then
        # .venv-jazzy: the Jazzy ROS wheels in front, everything else (torch, the package, launch) from
        # .venv through a .pth file, so torch is not installed twice. (launch_ros itself needs
        # composition_interfaces, which the tests stand in for: the check imports launch only.)
        [ -x .venv-jazzy/bin/python ] || "$python_bin" -m venv .venv-jazzy
        quiet .venv-jazzy/bin/pip install -q "${jazzy_wheels[@]}"
        site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        jazzy_site=$(.venv-jazzy/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        # site.addsitedir (not a bare path) so .venv's own .pth files run too (the editable install).
        echo "import site; site.addsitedir('$site')" > "$jazzy_site/zz_xmodal_main_venv.pth"
        .venv-jazzy/bin/python -c "import rclpy, launch, xmodal_compress_ros; print('jazzy venv: rclpy from', rclpy.__file__)"
    fi
else
    echo "setup_venv: $ros_sources not found (or no ros extra): launch tests will skip"
fi
.venv/bin/python -c "import torch, xmodal_compress_ros; print('xmodal_compress_ros', xmodal_compress_ros.__version__, 'torch', torch.__version__)"
