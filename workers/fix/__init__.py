"""FIX 4.4 for the exchange gateway: a session settings file (settings.py) and the initiator's
session layer (session.py: logon, heartbeats, test requests, gaps, resends, persisted sequence
numbers), on simplefix's codec.  docs/venues.md says how to point it at a broker."""
