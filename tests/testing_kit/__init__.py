"""kepler_async.testing: the simulators, their conformance to the vendor spec, fixtures, respx."""
