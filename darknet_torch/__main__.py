"""``python -m darknet_torch``."""
import sys

from darknet_torch.cli.main import main

sys.exit(main())
