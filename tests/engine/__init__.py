"""The engine, through its clients and alone: scheduler, submit path, journal, wires, faults."""
