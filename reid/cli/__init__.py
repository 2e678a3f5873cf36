"""Command-line programs. Each module has ``main(argv) -> int`` (the logic, raising ReIDError for a user's
mistake) and ``entry()`` (the console script of setup.py: ``reid-train``, ``reid-test``, ...), which runs ``main``
under :func:`reid.cli.parser.run_tool`. ``python tools/<name>.py`` runs the same ``entry``."""
