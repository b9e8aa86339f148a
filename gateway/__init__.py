"""The running system: app, settings, connections, auth, CLI and the embedded dev stack."""
