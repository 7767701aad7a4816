"""The kepler-async command line."""
