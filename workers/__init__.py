"""TickDesk worker processes.  Nothing under this package may import Qt."""
