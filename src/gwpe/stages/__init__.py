"""One module per ``gwpe`` verb / DVC stage: the only code that opens an MLflow stage run.

Each module has ``execute(config, ...)`` (the Python API: data -> model -> fit or evaluation -> metrics, inside
the stage's MLflow run) and ``main(args)`` (what ``gwpe <verb>`` calls: load the profile, execute, write the
DVC metrics file, print a summary). The work itself lives below: ``training``, ``evaluation``, ``inference``,
``tuning``.
"""
