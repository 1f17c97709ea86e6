"""Typed intents panels post to the app; panels never act on a backend themselves."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from console.model import Session
from console.rules import Breach


@dataclass
class ShowBreach(Message):
    breach: Breach


@dataclass
class ShowSession(Message):
    cluster: str
    session: Session


@dataclass
class ShowText(Message):
    """Open the detail view on a text (already sanitised)."""

    title: str
    body: str


@dataclass
class ShowRunbooks(Message):
    """Runbooks for a breach, ranked (None: every runbook)."""

    breach: Breach | None


@dataclass
class AckBreach(Message):
    """Ack (an Alertmanager silence) or un-ack (expire it) a Prometheus alert."""

    breach: Breach
    ack: bool


@dataclass
class SignalBackend(Message):
    """Cancel or terminate a session, as the operator saw it (pid *and* backend_start)."""

    kind: str  # "cancel" | "terminate"
    cluster: str
    session: Session
