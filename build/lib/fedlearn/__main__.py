import sys

from fedlearn.cli import main

sys.exit(main())
