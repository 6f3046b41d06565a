"""``python -m msgzoo.report RUN_DIRS... --out DIR``: see :mod:`msgzoo.report.compare`."""
from msgzoo.report.compare import main

main()
