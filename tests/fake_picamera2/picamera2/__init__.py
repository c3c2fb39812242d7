"""Fake picamera2 (see tests/fake_picamera2/__init__.py). Not the real library."""
from . import _fake
from .picamera2 import Picamera2
from .platform import Platform, get_platform
from .request import CompletedRequest, MappedArray

FAKE = True
