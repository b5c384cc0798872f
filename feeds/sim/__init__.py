"""Local exchange simulators on 127.0.0.1: scripted frames, REST answers and faults."""

from feeds.sim.binance import BinanceSim, RequestLogEntry, RestFault, ScriptedFrame, SimConnection

__all__ = ["BinanceSim", "RequestLogEntry", "RestFault", "ScriptedFrame", "SimConnection"]
