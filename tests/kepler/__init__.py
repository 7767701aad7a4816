"""Kepler's client: endpoints, models, errors, domains, score_many, real HTTP and web services."""
