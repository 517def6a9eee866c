"""Exception types shared by the library, the CLI and the nodes.

Every error that bad input can cause derives from :class:`XmodalError`, so a node can catch
exactly the errors that mean "this message was bad" and keep running.
"""


class XmodalError(Exception):
    """Base class for every error caused by bad input or configuration."""


class CalibrationError(XmodalError, ValueError):
    """A calibration file or message is missing keys, malformed, or inconsistent."""


class PointCloudError(XmodalError, ValueError):
    """A point cloud is malformed (bad fields, shape or size)."""


class ImageFormatError(XmodalError, ValueError):
    """An image has an unsupported encoding, shape or step."""


class PacketError(XmodalError, ValueError):
    """A packet is corrupted, truncated, or of an unknown version."""


class ModelFileError(XmodalError, ValueError):
    """A model file is missing, tampered with, or does not match its metadata."""


class DatasetError(XmodalError, ValueError):
    """A dataset or rosbag is missing files, topics, or has unsupported content."""


class ParameterError(XmodalError, ValueError):
    """A node parameter has a wrong type or a value outside its range."""
