"""The relay: every change of the watched collections captured as an event, and the
triggers it matches turned into executions.

One relay runs at a time, in whichever worker holds its lease (`lease.py`). It reads one
change stream over items, annotations, datasets, executions and triggers, turns each change
into an event (`capture.py`), matches it against the triggers it keeps in memory
(`matching.py`), and writes events, then executions, then its resume token
(`relay.py`). Every write is keyed (events by their change's token, executions by trigger and
event, or trigger and resource for `Once`), so a change read twice — after a crash, a takeover,
or by a relay that hung and woke up — creates nothing twice.
"""
