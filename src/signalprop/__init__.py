"""signalprop: make deep neural networks trainable.

The right weight initialization for every activation, non-saturating
activations, and layers in Keras words, on PyTorch.

Examples:
    >>> import signalprop as sp
    >>> layer = sp.Dense(100, activation="selu", kernel_initializer="lecun_normal")
"""

from signalprop import activations, diagnostics, init, keras, layers, meanfield, monitor
from signalprop.activations import SELU_ALPHA, SELU_SCALE
from signalprop.autoinit import AutoInitResult, autoinit
from signalprop.diagnostics import Report, Thresholds, check_self_normalizing, diagnose
from signalprop.gains import gain, moments, recommend_init, selu_parameters
from signalprop.layers import Dense, Sequential
from signalprop.meanfield import trainable_depth
from signalprop.monitor import Monitor
from signalprop.propagate import PropagationResult, propagate

__version__ = "0.1.0"
"""signalprop's version.

Examples:
    >>> import signalprop as sp
    >>> sp.__version__
    '0.1.0'
"""

__all__ = [
    "SELU_ALPHA",
    "SELU_SCALE",
    "AutoInitResult",
    "Dense",
    "Monitor",
    "PropagationResult",
    "Report",
    "Sequential",
    "Thresholds",
    "__version__",
    "activations",
    "autoinit",
    "check_self_normalizing",
    "diagnose",
    "diagnostics",
    "gain",
    "init",
    "keras",
    "layers",
    "meanfield",
    "moments",
    "monitor",
    "propagate",
    "recommend_init",
    "selu_parameters",
    "trainable_depth",
]
