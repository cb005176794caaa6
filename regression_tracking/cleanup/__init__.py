"""The operator's cleanup of orphaned RegressionGroups.

- ``detection``: one pass over the table: scanned, orphans by reason, too recent, eligible.
- ``run``: ``cleanup_orphaned_regressions``, the run from lock to summary.
- ``batches``: one batch: lock its rows, re-check them, back them up, delete or deactivate.
- ``locking``: the advisory locks that keep runs apart, and the statement timeouts.
- ``listing``: the dry run's bounded listing of orphans.
- ``projects``: the project scope of a run.
- ``backup/``: the backup file's rows, its writer, and the restore.
"""
