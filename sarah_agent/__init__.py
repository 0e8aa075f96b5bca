"""Sarah, the reference voice agent of caller memory."""

__version__ = "0.2.0"
