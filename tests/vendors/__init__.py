"""deepidv, MidLyr and ParseTx on the engine."""
