"""``python -m visrec.cli``."""

from visrec.cli.main import main

main()
