"""``python -m course ...``: see :mod:`course.cli`."""

from course.cli import main

raise SystemExit(main())
