"""The embedded dev/test stack: a real mongod (single-node replica set) and a real Valkey."""

from gateway.embedded.stack import EmbeddedStack, EmbeddedStackError

__all__ = ["EmbeddedStack", "EmbeddedStackError"]
