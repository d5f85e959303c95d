"""The application layer: the ``acsim`` command and what it drives end to end.

``cli`` (argument parsing), ``preflight`` (checks that depend on this machine), ``run`` (one
experiment), ``sweep`` (grids, executors, resume), ``bench`` (speed and memory) and ``report``
(the summary table). Nothing in acsim imports this package; it imports everything else.
"""
