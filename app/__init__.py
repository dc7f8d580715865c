"""TickDesk's Qt workstation: the window over the worker fleet (see docs/window.md)."""
