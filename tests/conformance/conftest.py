"""Keep pytest out of the conformance harness: ``run.py`` runs it, pytest must not.

Nothing here is named ``test_*.py``, and this makes sure that stays true for pytest
even if a file ever is: everything under ``tests/conformance/`` is ignored.
"""

collect_ignore_glob = ["*"]
