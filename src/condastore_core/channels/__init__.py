"""Channels: names to URLs (:mod:`.names`) and the gate every fetched URL passes (:mod:`.gate`)."""

from condastore_core.channels.gate import (
    OPEN_GATE,
    ChannelGate,
    ChannelRefused,
    gate_for,
    normalize_url,
)
from condastore_core.channels.names import DEFAULT_CHANNEL_ALIAS, channel_url

__all__ = [
    "DEFAULT_CHANNEL_ALIAS",
    "OPEN_GATE",
    "ChannelGate",
    "ChannelRefused",
    "channel_url",
    "gate_for",
    "normalize_url",
]
