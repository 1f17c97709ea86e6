"""Textual widgets and screens: they render ConsoleState and post intents, never talk to a backend."""
