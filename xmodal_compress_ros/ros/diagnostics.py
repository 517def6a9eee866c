"""diagnostic_msgs/DiagnosticArray for the nodes' /diagnostics topic."""
from __future__ import annotations

from typing import Any, Mapping

# diagnostic_msgs/DiagnosticStatus levels (bytes in the message).
OK, WARN, ERROR = 0, 1, 2


def diagnostic_array(stamp: Any, name: str, hardware_id: str, level: int, message: str,
                     values: Mapping[str, Any]) -> Any:
    """One DiagnosticArray holding one status; values are written as strings (floats with 3 decimals)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=str(key), value=_text(value)) for key, value in values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.3f}'
    return str(value)
