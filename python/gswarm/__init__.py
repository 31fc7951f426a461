"""gswarm: a data server for GPU clusters.

The Python API is :mod:`gswarm.data`::

    from gswarm.data import DataServer, get_storage, start_server, set_max_memory
"""

from gswarm._gswarm import __version__

__all__ = ["__version__"]
