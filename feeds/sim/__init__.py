"""The local exchange: every venue's protocol on 127.0.0.1 (tests, ``liqmon sim``, soak)."""

from feeds.sim.base import ExchangeSim, RequestLogEntry, RestFault, SimConnection
from feeds.sim.binance import BinanceProtocol, BinanceRecording, RecordedFrame

__all__ = [
    "BinanceProtocol",
    "BinanceRecording",
    "ExchangeSim",
    "RecordedFrame",
    "RequestLogEntry",
    "RestFault",
    "SimConnection",
]
