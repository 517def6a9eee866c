"""The service names launch_ros refers to; using one (loading a composable node) raises."""


class _Unavailable:
    """A service type of the real package; constructing its request or response raises."""

    class Request:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError('composition_interfaces is a test stand-in: composable nodes need a '
                                      'ROS install')

    Response = Request


class LoadNode(_Unavailable):
    pass


class UnloadNode(_Unavailable):
    pass


class ListNodes(_Unavailable):
    pass
