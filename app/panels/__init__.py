"""The window's panels: each one a widget over a model, fed by the 30 Hz flush."""
