"""``python -m getok_data ...``: the command line."""
from .cli import main

main()
