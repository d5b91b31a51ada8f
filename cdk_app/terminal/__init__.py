"""What the CLI and the local runner print: live progress and the run summary (``render``, from
``report``'s reading of a run), the runs and history tables (``timeline``), and their ``--json``
forms, which the console's API shares."""
