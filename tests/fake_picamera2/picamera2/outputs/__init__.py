from .output import Output
from .splittableoutput import SplittableOutput
