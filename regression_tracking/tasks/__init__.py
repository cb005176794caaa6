"""The mirror of Sentry's detector tasks (upstream: ``sentry/tasks/statistical_detectors.py``)."""
