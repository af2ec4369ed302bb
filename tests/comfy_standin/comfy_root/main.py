"""Start the ComfyUI stand-in like ComfyUI: ``python main.py --listen HOST --port PORT [...]``."""

import logging
import sys

from comfy.cli_args import args

# Before the other imports, so what they log at import time is formatted like the rest.
logging.basicConfig(level=args.verbose, format="%(message)s",
                    stream=sys.stdout if args.log_stdout else sys.stderr)

from standin.app import main  # noqa: E402

if __name__ == "__main__":
    main()
