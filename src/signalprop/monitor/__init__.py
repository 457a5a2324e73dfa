"""Watch a training run layer by layer: :class:`Monitor`, its history and its log.

Examples:
    >>> import torch, torch.nn.functional as F, signalprop as sp
    >>> model = sp.Sequential([sp.Dense(32, "relu") for _ in range(4)] + [sp.Dense(3)],
    ...                       input_shape=(8,))
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    >>> with sp.Monitor(model, every=2, optimizer=optimizer) as monitor:
    ...     for _ in range(4):
    ...         optimizer.zero_grad()
    ...         F.cross_entropy(model(torch.randn(32, 8)), torch.randint(0, 3, (32,))).backward()
    ...         optimizer.step()
    >>> [record.step for record in monitor.history.records]
    [1, 3]
"""

from signalprop.monitor._history import (
    QUANTITIES,
    LayerInfo,
    MonitorHistory,
    NonFiniteEvent,
    Record,
    TimedFinding,
    read_log,
)
from signalprop.monitor._monitor import Monitor

__all__ = [
    "QUANTITIES",
    "LayerInfo",
    "Monitor",
    "MonitorHistory",
    "NonFiniteEvent",
    "Record",
    "TimedFinding",
    "read_log",
]
