"""Stand-in for the composition_interfaces message package (not on PyPI) in the test environment.

``launch_ros.actions`` imports ``composition_interfaces.srv`` for its composable-node actions; the
package's launch files start plain nodes, so the tests only need that import to succeed. A ROS
install has the real package and never sees this one (test/ros/conftest.py adds it only when the
import fails).
"""
