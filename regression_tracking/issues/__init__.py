"""The mirror of Sentry's issue platform side (upstream: ``sentry/issues/``).

- ``grouping``: ``bulk_get_groups_from_fingerprints`` and the lookup with orphan logging
  (upstream: ``sentry/issues/status_change_consumer.py``).
- ``status_change``: status changes, their producer interface and the consumer that applies them
  (upstream: ``sentry/issues/status_change_message.py`` and ``status_change_consumer.py``).
"""
