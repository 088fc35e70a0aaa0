import sys

from adpipeline.sandbox.server import main

sys.exit(main())
